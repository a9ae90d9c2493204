package memstore_test

import (
	"testing"
	"time"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
	"github.com/partfs/partfs/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memstore.New(memstore.Options{}) })
}

// The suite must also hold through the retry wrapper, which every caller
// puts in front of a real store.
func TestConformanceWithRetry(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.WithRetry(memstore.New(memstore.Options{}), store.RetryOptions{Base: time.Millisecond})
	})
}
