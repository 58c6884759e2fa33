// Package e2e holds the multi-process tests: real `tandem serve` processes
// on loopback with mutual TLS and bolt files on disk, driven through the Go
// SDK and plain HTTP. The tests build the binary once in TestMain.
//
// Set TANDEM_E2E_LOG=1 to see the nodes' logs.
package e2e
