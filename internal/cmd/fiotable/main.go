// Command fiotable prints one table of the jobs in fio's JSON reports
// (`fio --output-format=json`), for `make fio`: per job the data moved, the
// time it took, bandwidth, IOPS and the median and 99th percentile latency.
// The latency is that of fsync when the job issued fsyncs (fio's sync
// statistics), else the completion latency of its reads or writes. It is not
// part of partfs and is not installed.
//
// Usage:
//
//	fiotable REPORT.json...
//
// A report that cannot be read is named on stderr, the others are printed,
// and the exit status is 1.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// report is the part of fio's JSON output that the table uses.
type report struct {
	Jobs []job `json:"jobs"`
}

type job struct {
	Name      string  `json:"jobname"`
	Error     int     `json:"error"`
	RuntimeMs float64 `json:"job_runtime"`
	Read      ddir    `json:"read"`
	Write     ddir    `json:"write"`
	Sync      struct {
		TotalIOs int64   `json:"total_ios"`
		Lat      latency `json:"lat_ns"`
	} `json:"sync"`
}

// ddir holds one direction's figures; fio reports bandwidth in bytes per
// second and latencies in nanoseconds.
type ddir struct {
	IOBytes  int64   `json:"io_bytes"`
	BwBytes  float64 `json:"bw_bytes"`
	IOPS     float64 `json:"iops"`
	TotalIOs int64   `json:"total_ios"`
	Clat     latency `json:"clat_ns"`
}

type latency struct {
	Percentile map[string]float64 `json:"percentile"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fiotable REPORT.json...")
		os.Exit(2)
	}
	rows := [][]string{{"job", "MiB", "s", "MB/s", "IOPS", "latency of", "p50 ms", "p99 ms"}}
	failed := false
	for _, path := range os.Args[1:] {
		jobs, err := readReport(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fiotable: %s: %v\n", path, err)
			name := strings.TrimSuffix(filepath.Base(path), ".json")
			rows = append(rows, []string{name, "-", "-", "-", "-", "no report", "-", "-"})
			failed = true
			continue
		}
		for _, j := range jobs {
			rows = append(rows, row(j))
			failed = failed || j.Error != 0
		}
	}
	printTable(os.Stdout, rows)
	fmt.Println("MB/s are 10^6 bytes per second; latencies are per call, as fio measures them")
	if failed {
		os.Exit(1)
	}
}

// readReport decodes a report. fio may print notices before the JSON
// document in the same file, so decoding starts at the first '{'.
func readReport(path string) ([]job, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	start := bytes.IndexByte(data, '{')
	if start < 0 {
		return nil, errors.New("no JSON in the report")
	}
	var r report
	dec := json.NewDecoder(bytes.NewReader(data[start:]))
	if err := dec.Decode(&r); err != nil && err != io.EOF {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if len(r.Jobs) == 0 {
		return nil, errors.New("no jobs in the report")
	}
	return r.Jobs, nil
}

// row formats one job: its reads when it read, else its writes.
func row(j job) []string {
	d, what := j.Write, "write"
	if j.Read.IOBytes > 0 {
		d, what = j.Read, "read"
	}
	lat := d.Clat
	if j.Sync.TotalIOs > 0 {
		lat, what = j.Sync.Lat, "fsync"
	}
	if j.Error != 0 {
		what = fmt.Sprintf("error %d", j.Error)
	}
	return []string{j.Name,
		fmt.Sprintf("%.1f", float64(d.IOBytes)/(1<<20)),
		fmt.Sprintf("%.1f", j.RuntimeMs/1000),
		fmt.Sprintf("%.1f", d.BwBytes/1e6),
		fmt.Sprintf("%.1f", d.IOPS),
		what, millis(lat, "50.000000"), millis(lat, "99.000000")}
}

// printTable prints rows in columns two spaces apart: the names (the job
// and what the latency is of) left-aligned, the figures right-aligned.
func printTable(w io.Writer, rows [][]string) {
	left := map[int]bool{0: true, 5: true}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, cell := range r {
			width[i] = max(width[i], len(cell))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			if left[i] {
				fmt.Fprintf(&b, "%-*s", width[i], cell)
			} else {
				fmt.Fprintf(&b, "%*s", width[i], cell)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// millis returns a percentile in milliseconds, or "-" when fio did not
// report it.
func millis(l latency, key string) string {
	ns, ok := l.Percentile[key]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2f", ns/1e6)
}
