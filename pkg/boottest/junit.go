package boottest

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// JUnit XML is what CI systems (GitLab, Jenkins, GitHub test reporters)
// read. One <testsuite> per firmware, since each firmware is one boot; a
// test not run because its boot failed is <skipped>, so the failure count
// points at the cause.

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure"`
	Skipped   *junitMessage `xml:"skipped"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",chardata"`
}

func seconds(s float64) string { return fmt.Sprintf("%.3f", s) }

// xmlText makes console and test output fit for XML: terminal escapes
// dropped and carriage returns of CRLF consoles removed (encoding/xml turns
// any other character XML cannot hold into U+FFFD).
func xmlText(s string) string {
	return strings.ReplaceAll(ansiRE.ReplaceAllString(s, ""), "\r", "")
}

// WriteJUnit writes results as a JUnit XML report; suite names the run
// (e.g. "cosa test <build id>"), started is when it began.
func WriteJUnit(w io.Writer, suite string, results []Result, started time.Time) error {
	top := junitSuites{Name: suite}
	var total float64
	byFW := map[string]int{}
	var suiteTime []float64
	for _, r := range results {
		i, ok := byFW[r.Firmware]
		if !ok {
			i = len(top.Suites)
			byFW[r.Firmware] = i
			suiteTime = append(suiteTime, 0)
			top.Suites = append(top.Suites, junitSuite{Name: suite + " (" + r.Firmware + ")", Timestamp: started.UTC().Format("2006-01-02T15:04:05")})
		}
		s := &top.Suites[i]
		c := junitCase{Name: r.Name, Classname: "cosa.test." + r.Firmware, Time: seconds(r.Duration)}
		first, _, _ := strings.Cut(xmlText(r.Reason), "\n")
		switch {
		case r.Passed:
			if r.Name == "boot" {
				c.SystemOut = fmt.Sprintf("kernel %.1fs, multi-user %.1fs, login %.1fs", r.Kernel, r.MultiUser, r.Login)
			}
		case r.Skipped:
			c.Skipped = &junitMessage{Message: first}
			s.Skipped++
			top.Skipped++
		default:
			kind := "failed"
			if r.Lost {
				kind = "boot-lost"
			}
			body := xmlText(r.Reason)
			if r.Output != "" {
				body += "\n\n" + xmlText(r.Output)
			}
			if r.ConsoleFile != "" {
				body += "\n\nconsole: " + r.ConsoleFile
			}
			c.Failure = &junitMessage{Message: first, Type: kind, Body: body}
			s.Failures++
			top.Failures++
		}
		s.Tests++
		top.Tests++
		total += r.Duration
		s.Cases = append(s.Cases, c)
		// A suite's cases ran one after another in one boot.
		suiteTime[i] += r.Duration
	}
	for i := range top.Suites {
		top.Suites[i].Time = seconds(suiteTime[i])
	}
	top.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(top); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
