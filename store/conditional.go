package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
)

// ConditionalSupport is what a server does with conditional writes
// (Condition).
type ConditionalSupport int

const (
	// ConditionalSupported: the server checks conditions and refuses a
	// write whose condition does not hold (ErrPrecondition), as AWS S3
	// (since November 2024) and MinIO do.
	ConditionalSupported ConditionalSupport = iota
	// ConditionalIgnored: the server accepted a write whose condition
	// could not hold. It ignores conditions, as servers that predate them
	// do: every conditional write succeeds, replacing whatever is there.
	ConditionalIgnored
	// ConditionalRejected: the server refuses conditional writes with 501
	// NotImplemented (ErrNotImplemented).
	ConditionalRejected
)

func (c ConditionalSupport) String() string {
	switch c {
	case ConditionalSupported:
		return "supported"
	case ConditionalIgnored:
		return "ignored"
	case ConditionalRejected:
		return "rejected"
	}
	return fmt.Sprintf("ConditionalSupport(%d)", int(c))
}

// probeBody is the object the probes write.
var probeBody = []byte("partfs: probe of conditional writes\n")

// probeWrongETag is an ETag the probe object never has.
var probeWrongETag = func() string {
	sum := Sum([]byte("partfs: a version that is not there"))
	return hex.EncodeToString(sum[:])
}()

// ProbeConditional finds out what the server behind st does with
// conditional writes, in five requests on key, a key nobody else uses
// (whatever is there is deleted):
//
//  1. Delete key, so that it is fresh, and Put a tiny object with
//     If-None-Match, which must succeed (ErrNotImplemented: rejected).
//  2. Put it again with If-None-Match, which must fail: ErrPrecondition
//     means supported, success means ignored, ErrNotImplemented rejected.
//  3. Put it with If-Match an ETag it does not have, judged the same way.
//  4. Delete key.
//
// When the two checks disagree the weaker answer is returned: ignored
// before rejected before supported, since a condition that is ignored
// fails in silence. Only Put is probed; servers check CompleteMultipart
// the same way. Any other failure is returned as an error, and so is a
// failure of the final delete, together with the support found.
func ProbeConditional(ctx context.Context, st Store, key string) (ConditionalSupport, error) {
	if err := st.Delete(ctx, key); err != nil {
		return 0, fmt.Errorf("probe conditional writes: delete %q: %w", key, err)
	}
	put := func(c Condition) error {
		_, err := st.Put(ctx, key, probeBody, Sum(probeBody), PutOptions{Cond: c})
		return err
	}
	err := put(Condition{IfNoneMatch: true})
	if errors.Is(err, ErrNotImplemented) {
		return ConditionalRejected, nil
	}
	if err != nil {
		return 0, fmt.Errorf("probe conditional writes: put %q with If-None-Match on a fresh key: %w", key, err)
	}
	support := ConditionalSupported
	for _, c := range []Condition{{IfNoneMatch: true}, {IfMatch: probeWrongETag}} {
		got, err := judge(put(c))
		if err != nil {
			return 0, fmt.Errorf("probe conditional writes: put %q with %s: %w", key, c, err)
		}
		support = weaker(support, got)
	}
	if err := st.Delete(ctx, key); err != nil {
		return support, fmt.Errorf("probe conditional writes: delete %q at the end: %w", key, err)
	}
	return support, nil
}

// ProbeConditionalDelete finds out what the server behind st does with
// DeleteIfMatch, in a few requests on key, a key nobody else uses: it puts
// a tiny object and deletes it with If-Match an ETag it does not have,
// which must fail with ErrPrecondition (supported) and may fail with
// ErrNotImplemented (rejected). A delete that succeeds is judged by the
// object: gone means the server ignores If-Match on delete, and a
// DeleteIfMatch there deletes whatever version is current (ignored); still
// there counts as supported. The object is deleted at the end.
func ProbeConditionalDelete(ctx context.Context, st Store, key string) (ConditionalSupport, error) {
	if _, err := st.Put(ctx, key, probeBody, Sum(probeBody), PutOptions{}); err != nil {
		return 0, fmt.Errorf("probe conditional deletes: put %q: %w", key, err)
	}
	support, err := judge(st.DeleteIfMatch(ctx, key, probeWrongETag))
	if err != nil {
		return 0, fmt.Errorf("probe conditional deletes: delete %q with If-Match %s: %w", key, probeWrongETag, err)
	}
	if support == ConditionalIgnored {
		_, err := st.Stat(ctx, key)
		switch {
		case errors.Is(err, ErrNotExist):
			return ConditionalIgnored, nil
		case err != nil:
			return 0, fmt.Errorf("probe conditional deletes: stat %q: %w", key, err)
		}
		support = ConditionalSupported
	}
	if err := st.Delete(ctx, key); err != nil {
		return support, fmt.Errorf("probe conditional deletes: delete %q at the end: %w", key, err)
	}
	return support, nil
}

// judge reads the outcome of a request whose condition could not hold.
func judge(err error) (ConditionalSupport, error) {
	switch {
	case err == nil:
		return ConditionalIgnored, nil
	case errors.Is(err, ErrPrecondition):
		return ConditionalSupported, nil
	case errors.Is(err, ErrNotImplemented):
		return ConditionalRejected, nil
	}
	return 0, err
}

// weaker returns the answer that promises less: ignored, then rejected,
// then supported.
func weaker(a, b ConditionalSupport) ConditionalSupport {
	switch {
	case a == ConditionalIgnored || b == ConditionalIgnored:
		return ConditionalIgnored
	case a == ConditionalRejected || b == ConditionalRejected:
		return ConditionalRejected
	}
	return ConditionalSupported
}
