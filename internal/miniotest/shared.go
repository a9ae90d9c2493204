package miniotest

import (
	"sync"
	"testing"
)

// shared holds the servers that Shared and SharedWith hand out, one per
// Options value, for the test binary's lifetime. Only Main stops them.
var shared struct {
	mu      sync.Mutex
	servers map[Options]*Server // guarded by mu
	errs    map[Options]error   // guarded by mu; a failed start is not retried
}

// Main runs the package's tests and then stops every shared server. Call it
// from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(miniotest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for o, s := range shared.servers {
		s.stop()
		delete(shared.servers, o)
	}
	return code
}

// Shared returns the package's shared plain-HTTP server, starting it on
// first use. The package's TestMain must call Main so that it is stopped.
func Shared(t testing.TB) *Server {
	t.Helper()
	return SharedWith(t, Options{})
}

// SharedWith is Shared for a server started with o.
func SharedWith(t testing.TB, o Options) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if s := shared.servers[o]; s != nil {
		return s
	}
	if err := shared.errs[o]; err != nil {
		t.Fatal(err)
	}
	s, err := start(o)
	if err != nil {
		if shared.errs == nil {
			shared.errs = make(map[Options]error)
		}
		shared.errs[o] = err
		t.Fatal(err)
	}
	if shared.servers == nil {
		shared.servers = make(map[Options]*Server)
	}
	shared.servers[o] = s
	return s
}
