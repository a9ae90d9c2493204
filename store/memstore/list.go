package memstore

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/partfs/partfs/store"
)

// maxListKeys is S3's page size limit and default.
const maxListKeys = 1000

// List implements store.Store with ListObjectsV2's rules: keys in byte order,
// keys holding the delimiter after prefix folded into common prefixes, and
// objects and prefixes together counted against max.
func (s *Store) List(ctx context.Context, prefix, delimiter, token string, max int) (page store.ListPage, err error) {
	op := Op{Name: "List", Key: prefix}
	defer s.record(op, 0, [md5.Size]byte{}, &err)
	if err = s.before(ctx, op); err != nil {
		return store.ListPage{}, err
	}
	if max <= 0 || max > maxListKeys {
		max = maxListKeys
	}
	after, err := decodeToken(token)
	if err != nil {
		return store.ListPage{}, fmt.Errorf("list %q: %w", prefix, err)
	}

	s.mu.Lock()
	keys := make([]string, 0, len(s.objects))
	for k := range s.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var (
		n      int
		last   listItem // the last item on this page
		folded string   // the common prefix emitted last
	)
	for _, k := range keys {
		if after.skips(k) {
			continue
		}
		item := listItem{key: k}
		if i := strings.Index(k[len(prefix):], delimiter); delimiter != "" && i >= 0 {
			item = listItem{key: k[:len(prefix)+i+len(delimiter)], isPrefix: true}
			if item.key == folded {
				continue
			}
		}
		if n == max {
			page.Next = last.token()
			break
		}
		if item.isPrefix {
			page.Prefixes = append(page.Prefixes, item.key)
			folded = item.key
		} else {
			page.Objects = append(page.Objects, s.objects[k].info(k))
		}
		n++
		last = item
	}
	s.mu.Unlock()
	return page, s.after(op)
}

// listItem is an entry of a listing page: an object key or a common prefix.
// The continuation token names the last item of a page.
type listItem struct {
	key      string
	isPrefix bool
}

// skips reports whether key was covered by the page that ended at it.
func (it listItem) skips(key string) bool {
	if it.key == "" {
		return false
	}
	return key <= it.key || (it.isPrefix && strings.HasPrefix(key, it.key))
}

func (it listItem) token() string {
	kind := "o"
	if it.isPrefix {
		kind = "p"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(kind + it.key))
}

func decodeToken(token string) (listItem, error) {
	if token == "" {
		return listItem{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 2 || (b[0] != 'o' && b[0] != 'p') {
		return listItem{}, fmt.Errorf("invalid continuation token %q", token)
	}
	return listItem{key: string(b[1:]), isPrefix: b[0] == 'p'}, nil
}
