// Command s3util is a small S3 tool for partfs's development workflow
// (`make run`, `make stop`): it waits for a local MinIO to come up, makes a
// bucket, lists objects, and lists or aborts leftover multipart uploads.
// It is not part of partfs and is not installed.
//
// Usage:
//
//	s3util [-endpoint URL] [-region R] wait
//	s3util [-endpoint URL] [-region R] mb BUCKET
//	s3util [-endpoint URL] [-region R] ls BUCKET [PREFIX]
//	s3util [-endpoint URL] [-region R] uploads BUCKET
//	s3util [-endpoint URL] [-region R] rm-uploads BUCKET
//
// Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func main() {
	endpoint := flag.String("endpoint", "http://127.0.0.1:9000", "S3 endpoint URL")
	region := flag.String("region", "us-east-1", "signing region")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: s3util [-endpoint URL] [-region R] wait | mb BUCKET | ls BUCKET [PREFIX] | uploads BUCKET | rm-uploads BUCKET")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, *endpoint, *region, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "s3util:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, endpoint, region string, args []string) error {
	if len(args) == 0 {
		flag.Usage()
		return errors.New("no command")
	}
	if args[0] == "wait" {
		return waitLive(ctx, endpoint)
	}
	if len(args) < 2 {
		return fmt.Errorf("%s: missing bucket", args[0])
	}
	c := s3.New(s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(
			os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN")),
	})
	bucket := args[1]
	switch args[0] {
	case "mb":
		return makeBucket(ctx, c, bucket)
	case "ls":
		prefix := ""
		if len(args) > 2 {
			prefix = args[2]
		}
		return list(ctx, c, bucket, prefix)
	case "uploads":
		return uploads(ctx, c, bucket, false)
	case "rm-uploads":
		return uploads(ctx, c, bucket, true)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// waitLive polls MinIO's liveness endpoint for up to 30 seconds.
func waitLive(ctx context.Context, endpoint string) error {
	url := strings.TrimSuffix(endpoint, "/") + "/minio/health/live"
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not live after 30s (last: %v)", endpoint, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// makeBucket creates bucket; one that already exists is fine.
func makeBucket(ctx context.Context, c *s3.Client, bucket string) error {
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if errors.As(err, &owned) {
		return nil
	}
	return err
}

func list(ctx context.Context, c *s3.Client, bucket, prefix string) error {
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			fmt.Printf("%12d  %s  %-40s  %s\n", aws.ToInt64(o.Size), aws.ToTime(o.LastModified).Format(time.RFC3339),
				strings.Trim(aws.ToString(o.ETag), `"`), aws.ToString(o.Key))
		}
	}
	return nil
}

// uploads lists the multipart uploads in progress, aborting them with abort.
func uploads(ctx context.Context, c *s3.Client, bucket string, abort bool) error {
	p := s3.NewListMultipartUploadsPaginator(c, &s3.ListMultipartUploadsInput{Bucket: &bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, u := range page.Uploads {
			fmt.Printf("%s  %s  %s\n", aws.ToTime(u.Initiated).Format(time.RFC3339), aws.ToString(u.UploadId), aws.ToString(u.Key))
			if !abort {
				continue
			}
			_, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: u.Key, UploadId: u.UploadId})
			if err != nil {
				return err
			}
		}
	}
	return nil
}
