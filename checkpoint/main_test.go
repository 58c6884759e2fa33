package checkpoint

import (
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Fetch and the handler run over real HTTP; no goroutine may outlive the
// tests once idle client connections are closed.
func TestMain(m *testing.M) {
	code := m.Run()
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goroutine leak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
