package main

import (
	"os"
	"strings"
	"testing"
)

func TestPercentileAndMedian(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	for _, tc := range []struct{ p, want float64 }{{0, 1}, {50, 3}, {90, 5}, {99, 5}, {100, 5}, {20, 1}, {21, 2}} {
		if got := percentile(v, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if v[0] != 5 {
		t.Error("percentile sorted its input in place")
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median = %v", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v", got)
	}
}

func TestSpliceSection(t *testing.T) {
	sec := markStart + "\nnew\n" + markEnd + "\n"
	if got := spliceSection("", sec); !strings.HasPrefix(got, "# Benchmarks\n\n"+markStart) {
		t.Errorf("new document: %q", got)
	}
	doc := "# B\n\nlead's part\n\n" + markStart + "\nold\n" + markEnd + "\n\nmore of the lead's\n"
	got := spliceSection(doc, sec)
	want := "# B\n\nlead's part\n\n" + markStart + "\nnew\n" + markEnd + "\n\nmore of the lead's\n"
	if got != want {
		t.Errorf("replace:\n%s\nwant:\n%s", got, want)
	}
	if got := spliceSection("# B\n\ntext\n", sec); got != "# B\n\ntext\n\n"+markStart+"\nnew\n"+markEnd+"\n" {
		t.Errorf("append: %q", got)
	}
}

func TestParseWrkOutput(t *testing.T) {
	out := "Running 1s test @ http://127.0.0.1:1/\n  1 threads and 2 connections\n" +
		`WRKJSON {"requests":1000,"durationUs":2000000,"bytes":5,"errConnect":0,"errRead":0,"errWrite":0,"errStatus":3,"errTimeout":1,` +
		`"latMinUs":10,"latMeanUs":20.50,"latMaxUs":90,"latStdevUs":3.00,"p50Us":19,"p90Us":30,"p99Us":80,"p999Us":89}` + "\n"
	r, err := parseWrkOutput([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS() != 500 || r.ErrStatus != 3 || r.SocketErrors() != 1 || r.P99Us != 80 {
		t.Errorf("parsed %+v", r)
	}
	if _, err := parseWrkOutput([]byte("no summary")); err == nil {
		t.Error("missing summary accepted")
	}
}

func TestSizeLabel(t *testing.T) {
	for n, want := range map[int]string{0: "0", 100000: "100k", 1000000: "1M", 2500: "2500", 250000: "250k"} {
		if got := sizeLabel(n); got != want {
			t.Errorf("sizeLabel(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestProcReaders(t *testing.T) {
	if _, err := cpuTicks(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	kb, err := procStatusKBFile("/proc/self/status", "VmRSS")
	if err != nil || kb["VmRSS"] <= 0 {
		t.Fatalf("VmRSS: %v %v", kb, err)
	}
}

func TestChartRenders(t *testing.T) {
	img := renderBarChart("title", "req/s", []bar{
		{Label: "a", Sub: "x", Median: 10000, Min: 9000, Max: 10500, Color: kindColors["baseline"]},
		{Label: "b", Median: 3000, Min: 2900, Max: 3100, Color: kindColors["forwardauth"], Flag: true},
	})
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 400 {
		t.Fatalf("chart is %v", b)
	}
	if fmtInt(10234.6) != "10,235" || fmtInt(999) != "999" || fmtInt(1000000) != "1,000,000" {
		t.Errorf("fmtInt: %s %s %s", fmtInt(10234.6), fmtInt(999), fmtInt(1000000))
	}
}
