package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/partfs/partfs/store"
	"github.com/partfs/partfs/store/memstore"
)

func TestProbeConditional(t *testing.T) {
	tests := []struct {
		name   string
		opts   memstore.Options
		want   store.ConditionalSupport
		delete store.ConditionalSupport
		calls  []string
	}{
		{"supported", memstore.Options{}, store.ConditionalSupported, store.ConditionalSupported,
			[]string{"Delete", "Put", "Put", "Put", "Delete"}},
		{"ignored", memstore.Options{IgnoreConditions: true}, store.ConditionalIgnored, store.ConditionalIgnored,
			[]string{"Delete", "Put", "Put", "Put", "Delete"}},
		{"rejected", memstore.Options{RejectConditions: true}, store.ConditionalRejected, store.ConditionalRejected,
			[]string{"Delete", "Put"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			mem := memstore.New(tt.opts)
			// A leftover of an earlier probe is deleted first.
			old := []byte("left over")
			if _, err := mem.Put(ctx, "probe", old, store.Sum(old), store.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			mem.ResetCalls()
			got, err := store.ProbeConditional(ctx, mem, "probe")
			if err != nil || got != tt.want {
				t.Fatalf("ProbeConditional = %v, %v; want %v", got, err, tt.want)
			}
			var names []string
			for _, c := range mem.Calls() {
				names = append(names, c.Name)
			}
			if !slices.Equal(names, tt.calls) {
				t.Errorf("calls %v, want %v", names, tt.calls)
			}
			if tt.want == store.ConditionalSupported {
				puts := mem.Calls()[1:4]
				if !puts[0].Cond.IfNoneMatch || !puts[1].Cond.IfNoneMatch || puts[2].Cond.IfMatch == "" ||
					puts[0].Err != nil || !errors.Is(puts[1].Err, store.ErrPrecondition) || !errors.Is(puts[2].Err, store.ErrPrecondition) {
					t.Errorf("the probe's Puts: %+v", puts)
				}
			}
			if len(mem.Objects()) != 0 {
				t.Errorf("the probe left %v behind", mem.Objects())
			}

			del, err := store.ProbeConditionalDelete(ctx, mem, "probe")
			if err != nil || del != tt.delete {
				t.Fatalf("ProbeConditionalDelete = %v, %v; want %v", del, err, tt.delete)
			}
			if len(mem.Objects()) != 0 {
				t.Errorf("the delete probe left %v behind", mem.Objects())
			}
		})
	}
}

func TestProbeConditionalFailure(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New(memstore.Options{})
	denied := errors.New("denied")
	mem.SetFault(func(op memstore.Op) error {
		if op.Name == "Put" && op.Cond.IfMatch != "" {
			return store.ErrAccessDenied
		}
		return nil
	})
	if got, err := store.ProbeConditional(ctx, mem, "probe"); !errors.Is(err, store.ErrAccessDenied) {
		t.Fatalf("ProbeConditional with a failing Put = %v, %v; want ErrAccessDenied", got, err)
	}
	mem.SetFault(func(op memstore.Op) error {
		if op.Name == "Delete" {
			return denied
		}
		return nil
	})
	if got, err := store.ProbeConditional(ctx, mem, "probe"); !errors.Is(err, denied) {
		t.Fatalf("ProbeConditional with a failing delete = %v, %v; want the error", got, err)
	}
}

func TestConditionString(t *testing.T) {
	tests := []struct {
		c    store.Condition
		zero bool
		want string
	}{
		{store.Condition{}, true, "no condition"},
		{store.Condition{IfMatch: "e"}, false, "If-Match e"},
		{store.Condition{IfNoneMatch: true}, false, "If-None-Match *"},
		{store.Condition{IfMatch: "e", IfNoneMatch: true}, false, "If-Match e and If-None-Match *"},
	}
	for _, tt := range tests {
		if tt.c.IsZero() != tt.zero || tt.c.String() != tt.want {
			t.Errorf("%#v: IsZero %v, String %q; want %v, %q", tt.c, tt.c.IsZero(), tt.c, tt.zero, tt.want)
		}
	}
	for s, want := range map[store.ConditionalSupport]string{
		store.ConditionalSupported: "supported", store.ConditionalIgnored: "ignored", store.ConditionalRejected: "rejected",
	} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(s), s, want)
		}
	}
}
