package boottest

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

func TestWriteJUnit(t *testing.T) {
	results := []Result{
		{Name: "boot", Firmware: "uefi", Passed: true, Duration: 61.25, Kernel: 3, MultiUser: 40, Login: 41},
		{Name: "10-ssh", Firmware: "uefi", Passed: true, Duration: 1.5},
		{Name: "boot", Firmware: "bios", Duration: 21, Lost: true,
			Reason:      `boot lost after 20s, VM stopped: the console says "[    4.544012] systemd[1]: Failed to isolate default target: Unit default.target is masked."`,
			Output:      "[\x1b[0;32m  OK  \x1b[0m] Reached target basic.target\r\n[    4.544012] systemd[1]: Failed to isolate default target: Unit default.target is masked.\r\n<&> \x01",
			ConsoleFile: "/w/tmp/test/boot-bios/console.txt"},
		{Name: "10-ssh", Firmware: "bios", Reason: "not run: the boot failed", Skipped: true},
	}
	var buf bytes.Buffer
	started := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	if err := WriteJUnit(&buf, "cosa test 12.20261201.dev.1", results, started); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.HasPrefix(out, `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Errorf("no XML header:\n%s", out)
	}
	if strings.ContainsAny(out, "\x1b\x01\r") {
		t.Errorf("control characters in the report:\n%q", out)
	}
	// Read it back the way a CI system would.
	var got struct {
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Skipped  int    `xml:"skipped,attr"`
		Time     string `xml:"time,attr"`
		Suites   []struct {
			Name      string `xml:"name,attr"`
			Tests     int    `xml:"tests,attr"`
			Failures  int    `xml:"failures,attr"`
			Time      string `xml:"time,attr"`
			Timestamp string `xml:"timestamp,attr"`
			Cases     []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Time      string `xml:"time,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
					Type    string `xml:"type,attr"`
					Body    string `xml:",chardata"`
				} `xml:"failure"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
				SystemOut string `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("report does not parse: %v\n%s", err, out)
	}
	if got.Tests != 4 || got.Failures != 1 || got.Skipped != 1 || got.Time != "83.750" || len(got.Suites) != 2 {
		t.Fatalf("totals: %+v", got)
	}
	uefi, bios := got.Suites[0], got.Suites[1]
	if uefi.Name != "cosa test 12.20261201.dev.1 (uefi)" || uefi.Tests != 2 || uefi.Failures != 0 || uefi.Time != "62.750" || uefi.Timestamp != "2026-12-01T22:00:00" {
		t.Errorf("uefi suite: %+v", uefi)
	}
	if c := uefi.Cases[0]; c.Name != "boot" || c.Classname != "cosa.test.uefi" || c.Time != "61.250" || c.Failure != nil || !strings.Contains(c.SystemOut, "login 41.0s") {
		t.Errorf("uefi boot case: %+v", c)
	}
	boot := bios.Cases[0]
	if boot.Failure == nil || boot.Failure.Type != "boot-lost" ||
		!strings.Contains(boot.Failure.Message, "Failed to isolate default target") ||
		!strings.Contains(boot.Failure.Body, "[  OK  ] Reached target basic.target\n") ||
		!strings.Contains(boot.Failure.Body, "<&>") ||
		!strings.HasSuffix(boot.Failure.Body, "console: /w/tmp/test/boot-bios/console.txt") {
		t.Errorf("bios boot failure: %+v", boot.Failure)
	}
	if s := bios.Cases[1]; s.Skipped == nil || s.Skipped.Message != "not run: the boot failed" || s.Failure != nil {
		t.Errorf("skipped case: %+v", s)
	}
}
