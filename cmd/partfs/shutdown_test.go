package main

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/partfs/partfs/metrics"
)

func TestKernelRequestTimeout(t *testing.T) {
	tests := []struct {
		name        string
		def, max    string
		want        time.Duration
		budget, io  time.Duration // after fitting, from 2m and 30s
		replyLimitW time.Duration
	}{
		{"none", "0\n", "0\n", 0, 2 * time.Minute, 30 * time.Second, 0},
		{"old kernel", "", "", 0, 2 * time.Minute, 30 * time.Second, 0},
		{"default", "60\n", "0\n", time.Minute, 22500 * time.Millisecond, 11250 * time.Millisecond, 45 * time.Second},
		{"max only", "0", "600", 10 * time.Minute, 2 * time.Minute, 30 * time.Second, 450 * time.Second},
		{"both", "600", "30", 30 * time.Second, 11250 * time.Millisecond, 5625 * time.Millisecond, 22500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := func(name string) ([]byte, error) {
				v := map[string]string{defaultRequestTimeoutFile: tt.def, maxRequestTimeoutFile: tt.max}[name]
				if v == "" {
					return nil, os.ErrNotExist
				}
				return []byte(v), nil
			}
			got := kernelRequestTimeout(read)
			if got != tt.want {
				t.Fatalf("timeout %v, want %v", got, tt.want)
			}
			c := connConfig{IOTimeout: 30 * time.Second, RetryBudget: 2 * time.Minute}
			limit := c.fitKernelTimeout(got)
			if limit != tt.replyLimitW || c.RetryBudget != tt.budget || c.IOTimeout != tt.io {
				t.Fatalf("fit: limit %v budget %v io %v; want %v %v %v", limit, c.RetryBudget, c.IOTimeout, tt.replyLimitW, tt.budget, tt.io)
			}
			if limit > 0 && c.RetryBudget+2*c.IOTimeout > got {
				t.Fatalf("an operation may take %v, past the kernel's %v", c.RetryBudget+2*c.IOTimeout, got)
			}
		})
	}
}

// The context of storing files at unmount ends once nothing has moved
// for the limit, and not while requests keep being answered.
func TestProgressContext(t *testing.T) {
	var requests atomic.Int64
	snap := func() metrics.Snapshot { return metrics.Snapshot{Requests: requests.Load()} }
	ctx, cancel := progressContext(context.Background(), snap, 400*time.Millisecond)
	defer cancel()
	for range 10 { // 1s of steady progress
		time.Sleep(100 * time.Millisecond)
		requests.Add(1)
	}
	if ctx.Err() != nil {
		t.Fatal("ended while requests were answered")
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("did not end once progress stopped")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal(ctx.Err())
	}
}
