package storetest

import (
	"slices"
	"strings"

	"github.com/partfs/partfs/store"
)

// listAll pages through a listing with page size max and returns the
// entries in the order met, prefixes marked by their trailing delimiter
// (objects hold no delimiter after prefix in a delimited listing).
func (e *env) listAll(prefix, delimiter string, max int) (objects []store.Object, entries []string) {
	e.Helper()
	token := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			e.Fatalf("List(%q) did not end after %d pages", prefix, pages)
		}
		page, err := e.st.List(e.ctx, prefix, delimiter, token, max)
		if err != nil {
			e.Fatalf("List(%q, %q, page %d): %v", prefix, delimiter, pages, err)
		}
		if n := len(page.Objects) + len(page.Prefixes); n > max {
			e.Fatalf("List page %d holds %d entries, more than max %d", pages, n, max)
		}
		// Within a page both lists are sorted; across pages the entries go on
		// in order, so merging each page keeps the whole listing sorted.
		var keys []string
		for _, o := range page.Objects {
			keys = append(keys, o.Key)
		}
		merged := append(keys, page.Prefixes...)
		slices.Sort(merged)
		entries = append(entries, merged...)
		objects = append(objects, page.Objects...)
		if page.Next == "" {
			return objects, entries
		}
		if page.Next == token {
			e.Fatalf("List returned the same continuation token twice")
		}
		token = page.Next
	}
}

func testList(e *env) {
	names := []string{"a", "b/1", "b/2", "c", "d/", "d/x", "e/f/g", "h"}
	bodies := map[string][]byte{}
	for i, n := range names {
		bodies[e.key(n)] = payload(i+1, byte(i))
		e.put(e.key(n), bodies[e.key(n)], nil)
	}
	withPrefix := func(ss ...string) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = e.key(s)
		}
		return out
	}

	tests := []struct {
		prefix, delimiter string
		max               int
		want              []string
	}{
		{e.prefix, "/", 2, withPrefix("a", "b/", "c", "d/", "e/", "h")},
		{e.prefix, "/", 1, withPrefix("a", "b/", "c", "d/", "e/", "h")},
		{e.prefix, "/", 1000, withPrefix("a", "b/", "c", "d/", "e/", "h")},
		{e.prefix, "", 3, withPrefix(names...)},
		{e.key("d/"), "/", 1, withPrefix("d/", "d/x")},
		{e.key("e/"), "/", 2, withPrefix("e/f/")},
		{e.key("b"), "/", 2, withPrefix("b/")},
		{e.key("b/"), "", 1, withPrefix("b/1", "b/2")},
	}
	for _, tt := range tests {
		objects, got := e.listAll(tt.prefix, tt.delimiter, tt.max)
		if !slices.Equal(got, tt.want) {
			e.Fatalf("List(%q, %q, max %d) = %v, want %v", tt.prefix, tt.delimiter, tt.max, got, tt.want)
		}
		for _, o := range objects {
			b := bodies[o.Key]
			if o.Size != int64(len(b)) || o.ETag != md5hex(b) || o.LastModified.IsZero() {
				e.Fatalf("listed %+v, want size %d and ETag %s", o, len(b), md5hex(b))
			}
			if tt.delimiter != "" && strings.Contains(o.Key[len(tt.prefix):], tt.delimiter) {
				e.Fatalf("listed object %q holds the delimiter after the prefix", o.Key)
			}
		}
	}
}

func testListEmpty(e *env) {
	page, err := e.st.List(e.ctx, e.key("nothing/"), "/", "", 0)
	if err != nil {
		e.Fatalf("List of an empty prefix: %v", err)
	}
	if len(page.Objects) != 0 || len(page.Prefixes) != 0 || page.Next != "" {
		e.Fatalf("List of an empty prefix = %+v", page)
	}
}
