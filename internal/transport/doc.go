// Package transport carries all node-to-node traffic of Tandem over one
// mutual-TLS TCP port.
//
// A Mux owns the listener. Every accepted connection completes the TLS
// handshake (bounded by a deadline, in its own goroutine so that a slow or
// silent client cannot hold up Accept) and then sends exactly one protocol
// byte that selects the consumer:
//
//	'R' (ProtoRaft)  the connection belongs to the Raft stream layer
//	'E' (ProtoRaftEpoch) followed by an epoch (uint64): the Raft stream
//	                 layer of that epoch only
//	                 (Mux.RaftLayer, a raft.StreamLayer);
//	'F' (ProtoRPC)   the connection carries forwarding RPCs, HTTP/1.1 in
//	                 clear text inside the TLS session (Mux.RPCListener on the
//	                 server side, Mux.DialRPC or Mux.RPCHTTPClient on the
//	                 client side).
//
// Any other first byte closes the connection and is counted in Stats.
//
// Both directions are authenticated: the server configuration must require
// and verify client certificates, and the client configuration verifies the
// server. After the handshake the peer's node ID is extracted from its
// certificate (Config.PeerID, DefaultPeerID by default); a peer without a
// node certificate is refused. PeerID(conn) and PeerIDFromContext return the
// verified ID to consumers.
//
// Lifetimes: Mux.Close closes the listener and every connection the Mux has
// accepted or dialled, and unblocks Accept callers with net.ErrClosed. The
// Raft layer and the RPC listener can be closed on their own (an engine
// stops, an HTTP server shuts down); the next call to RaftLayer or
// RPCListener then returns a fresh one on the same port, which is how a new
// consensus epoch reuses the port. Closing the Raft layer also closes the
// connections accepted or dialled through it; closing the RPC listener does
// not close its connections (an http.Server drains them).
package transport
