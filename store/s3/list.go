package s3

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/partfs/partfs/store"
)

// List implements store.Store.
//
// Two MinIO faults shape it, both around "dir/" marker objects, which partfs
// writes for every directory:
//   - asked for one key under a prefix that names a marker object, MinIO
//     answers with the marker alone and calls it the last page; so List
//     never asks for fewer than two keys, and trims the page itself;
//   - after a page ending in a common prefix that holds a marker object and
//     keys below it, MinIO's continuation token ends the listing early.
//
// Page tokens are therefore partfs's own: "a:" and the key to start after
// (S3's StartAfter), or, for a truncated page without entries, "c:" and the
// server's continuation token.
func (s *Store) List(ctx context.Context, prefix, delimiter, token string, limit int) (store.ListPage, error) {
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix}
	if delimiter != "" {
		in.Delimiter = &delimiter
	}
	switch {
	case token == "":
	case strings.HasPrefix(token, "a:"):
		in.StartAfter = aws.String(token[2:])
	case strings.HasPrefix(token, "c:"):
		in.ContinuationToken = aws.String(token[2:])
	default:
		return store.ListPage{}, fmt.Errorf("s3 list %q: invalid page token %q", prefix, token)
	}
	if limit > 0 {
		in.MaxKeys = aws.Int32(int32(min(max(limit, 2), 1000)))
	}
	w := s.watch(ctx, false)
	out, err := s.client.ListObjectsV2(w.ctx, in)
	w.end()
	if err != nil {
		return store.ListPage{}, s.failed(w, "list", prefix, err)
	}
	page, last, trimmed := mergePage(out.Contents, out.CommonPrefixes, limit)
	switch {
	case trimmed || aws.ToBool(out.IsTruncated) && last != "":
		page.Next = "a:" + last
	case !aws.ToBool(out.IsTruncated):
	case aws.ToString(out.NextContinuationToken) != "":
		page.Next = "c:" + aws.ToString(out.NextContinuationToken)
	default:
		return store.ListPage{}, fmt.Errorf("s3 list %q: truncated page without entries or a continuation token", prefix)
	}
	return page, nil
}

// mergePage takes up to limit entries (all when limit <= 0) of the two sorted
// lists in key order. It returns the key a following page starts after and
// whether entries were left out.
func mergePage(objects []types.Object, prefixes []types.CommonPrefix, limit int) (page store.ListPage, last string, trimmed bool) {
	i, j := 0, 0
	for i < len(objects) || j < len(prefixes) {
		if limit > 0 && i+j == limit {
			return page, last, true
		}
		if j == len(prefixes) || i < len(objects) && aws.ToString(objects[i].Key) < aws.ToString(prefixes[j].Prefix) {
			o := objects[i]
			i++
			last = aws.ToString(o.Key)
			page.Objects = append(page.Objects, store.Object{
				Key:          last,
				Size:         aws.ToInt64(o.Size),
				ETag:         unquote(aws.ToString(o.ETag)),
				LastModified: aws.ToTime(o.LastModified),
			})
			continue
		}
		p := aws.ToString(prefixes[j].Prefix)
		j++
		page.Prefixes = append(page.Prefixes, p)
		// Start past every key under the prefix: U+10FFFF is the largest
		// code point, so only keys holding it right after the prefix
		// would be passed over.
		last = p + "\U0010FFFF"
	}
	return page, last, false
}
