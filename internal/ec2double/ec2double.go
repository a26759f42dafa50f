// Package ec2double is a TEST DOUBLE of Amazon EC2, for tests only. It is not an
// emulator: it speaks just enough of the EC2 Query API (form-encoded POST,
// XML replies in the EC2 namespace, <Response><Errors> on failure) for the
// calls `cosa buildextend-aws --upload` makes, keeps what they create in
// memory per region, and refuses what real EC2 would refuse so the upload
// code cannot pass by sending nonsense:
//
//   - every request must be SigV4-signed for service ec2; the region is
//     taken from the credential scope, so each region's client sees only
//     its own snapshots and images;
//   - ImportSnapshot: DiskContainer.Format must be VMDK, VHD, VHDX or RAW
//     (else InvalidParameterValue) and UserBucket.S3Bucket/S3Key are
//     required. As in EC2 the disk is checked while the task runs: a
//     missing S3 object, a format other than VMDK (this double cannot
//     check other formats), or an object that does not start with the
//     sparse VMDK magic "KDMV" and declare createType="streamOptimized"
//     end the task as "deleted" with a ClientError status message;
//   - a task becomes "completed" (with a new snap- id) only after it has
//     been described pollsToComplete times, so callers must poll;
//   - RegisterImage: name 3-128 valid characters and unique in the region
//     (InvalidAMIName.Duplicate), architecture, virtualization type,
//     boot mode and volume types from EC2's enums, EnaSupport only with
//     hvm, RootDeviceName present among the block device mappings, and
//     every snapshot known in that region (InvalidSnapshot.NotFound);
//   - CreateTags, ModifyImageAttribute, ModifySnapshotAttribute need
//     existing resources in the region and valid account ids / "all";
//   - CopyImage needs the source AMI in SourceRegion; the copy (with its
//     own snapshot) is "pending" until described pollsToComplete times;
//   - DescribeImages reports unknown ids as InvalidAMIID.NotFound.

package ec2double

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

const ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

type doubleTask struct {
	id, region, format, bucket, key string
	polls                           int
	status, message, snapshot       string
}

type doubleSnapshot struct {
	id, region  string
	volumePerms []string
	tags        map[string]string
}

type doubleImage struct {
	id, region, name, state      string
	arch, virt, bootMode, root   string
	ena                          bool
	snapshot, volumeType         string
	launchUsers                  []string
	public                       bool
	tags                         map[string]string
	polls                        int
	copiedFrom, copiedFromRegion string
}

// Double is the TEST DOUBLE described at the top of this file.
type Double struct {
	get ObjectGetter
	// PollsToComplete is how many describes a task or copy takes to finish.
	PollsToComplete int
	// FailCopy makes copies end "failed" instead of "available".
	FailCopy bool
	// URL is the endpoint, when started with Start.
	URL string

	mu        sync.Mutex
	seq       int
	tasks     map[string]*doubleTask
	snapshots map[string]*doubleSnapshot
	images    map[string]*doubleImage
	calls     []string // "region Action"
}

// ObjectGetter returns the start (at least the first 64 KiB, or all of a
// shorter object) of an S3 object, as EC2 reads the disk it imports.
type ObjectGetter func(bucket, key string) ([]byte, error)

// FromS3mem reads imported disks from a gofakes3 in-memory backend.
func FromS3mem(b *s3mem.Backend) ObjectGetter {
	return func(bucket, key string) ([]byte, error) {
		obj, err := b.GetObject(bucket, key, nil)
		if err != nil {
			return nil, err
		}
		defer obj.Contents.Close()
		head := make([]byte, 64<<10)
		n, _ := io.ReadFull(obj.Contents, head)
		return head[:n], nil
	}
}

// New makes a double that reads imported disks with get.
func New(get ObjectGetter) *Double {
	return &Double{get: get, PollsToComplete: 2,
		tasks: map[string]*doubleTask{}, snapshots: map[string]*doubleSnapshot{}, images: map[string]*doubleImage{}}
}

// Start serves a new double on a loopback port until the test ends.
func Start(tb testing.TB, get ObjectGetter) *Double {
	d := New(get)
	srv := httptest.NewServer(d)
	tb.Cleanup(srv.Close)
	d.URL = srv.URL
	return d
}

type ec2Error struct{ code, msg string }

func (e *ec2Error) Error() string { return e.code + ": " + e.msg }

func fail(code, format string, a ...any) *ec2Error {
	return &ec2Error{code, fmt.Sprintf(format, a...)}
}

var scopeRE = regexp.MustCompile(`Credential=[^/,]+/[0-9]{8}/([a-z0-9-]+)/ec2/aws4_request`)

// ServeHTTP answers one EC2 Query API request.
func (d *Double) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	reply := func(status int, body string) {
		w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
		w.WriteHeader(status)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+body)
	}
	errReply := func(e *ec2Error) {
		status := http.StatusBadRequest
		if e.code == "AuthFailure" {
			status = http.StatusUnauthorized
		}
		var b bytes.Buffer
		xml.EscapeText(&b, []byte(e.msg))
		reply(status, fmt.Sprintf("<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>req-%d</RequestID></Response>",
			e.code, b.String(), d.seq))
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		errReply(fail("InvalidRequest", "the EC2 Query API takes form-encoded POSTs"))
		return
	}
	m := scopeRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		errReply(fail("AuthFailure", "request is not SigV4-signed for ec2"))
		return
	}
	region := m[1]
	body, _ := io.ReadAll(r.Body)
	form, err := url.ParseQuery(string(body))
	if err != nil {
		errReply(fail("InvalidRequest", "bad form: %v", err))
		return
	}
	if form.Get("Version") == "" {
		errReply(fail("MissingParameter", "Version"))
		return
	}
	action := form.Get("Action")
	d.calls = append(d.calls, region+" "+action)
	d.seq++
	handlers := map[string]func(string, url.Values) (string, *ec2Error){
		"ImportSnapshot":              d.importSnapshot,
		"DescribeImportSnapshotTasks": d.describeImportSnapshotTasks,
		"RegisterImage":               d.registerImage,
		"CreateTags":                  d.createTags,
		"ModifyImageAttribute":        d.modifyImageAttribute,
		"ModifySnapshotAttribute":     d.modifySnapshotAttribute,
		"CopyImage":                   d.copyImage,
		"DescribeImages":              d.describeImages,
	}
	h, ok := handlers[action]
	if !ok {
		errReply(fail("InvalidAction", "The action %s is not valid for this web service (TEST DOUBLE)", action))
		return
	}
	inner, e := h(region, form)
	if e != nil {
		errReply(e)
		return
	}
	reply(http.StatusOK, fmt.Sprintf(`<%sResponse xmlns="%s"><requestId>req-%d</requestId>%s</%sResponse>`, action, ec2Namespace, d.seq, inner, action))
}

func (d *Double) newID(prefix string) string {
	d.seq++
	return fmt.Sprintf("%s-%017x", prefix, 0xc05a0000+d.seq)
}

// list returns form values Prefix.1, Prefix.2, ... in order.
func list(form url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (d *Double) importSnapshot(region string, f url.Values) (string, *ec2Error) {
	format := f.Get("DiskContainer.Format")
	switch strings.ToUpper(format) {
	case "VMDK", "VHD", "VHDX", "RAW":
	default:
		return "", fail("InvalidParameterValue", "Value (%s) for parameter DiskContainer.Format is invalid", format)
	}
	bucket, key := f.Get("DiskContainer.UserBucket.S3Bucket"), f.Get("DiskContainer.UserBucket.S3Key")
	if f.Get("DiskContainer.Url") != "" {
		return "", fail("InvalidParameterCombination", "this TEST DOUBLE only imports from UserBucket")
	}
	if bucket == "" || key == "" {
		return "", fail("MissingParameter", "DiskContainer.UserBucket.S3Bucket and S3Key are required")
	}
	t := &doubleTask{id: d.newID("import-snap"), region: region, format: strings.ToUpper(format), bucket: bucket, key: key, status: "active", message: "pending"}
	d.tasks[t.id] = t
	return fmt.Sprintf(`<importTaskId>%s</importTaskId><snapshotTaskDetail><status>active</status><progress>0</progress><format>%s</format>`+
		`<userBucket><s3Bucket>%s</s3Bucket><s3Key>%s</s3Key></userBucket></snapshotTaskDetail>`, t.id, t.format, esc(bucket), esc(key)), nil
}

// validateDisk is where the disk behind an import task is looked at.
func (d *Double) validateDisk(t *doubleTask) string {
	head, err := d.get(t.bucket, t.key)
	if err != nil {
		return fmt.Sprintf("ClientError: Unable to read s3://%s/%s: %v", t.bucket, t.key, err)
	}
	if t.format != "VMDK" {
		return fmt.Sprintf("ClientError: Disk validation failed [this TEST DOUBLE only validates VMDK, not %s]", t.format)
	}
	if !bytes.HasPrefix(head, []byte("KDMV")) {
		return "ClientError: Disk validation failed [Unsupported VMDK File Format]"
	}
	if !bytes.Contains(head, []byte(`createType="streamOptimized"`)) {
		return "ClientError: Disk validation failed [Unsupported VMDK File Format: not streamOptimized]"
	}
	return ""
}

func (d *Double) describeImportSnapshotTasks(region string, f url.Values) (string, *ec2Error) {
	var b strings.Builder
	for _, id := range list(f, "ImportTaskId") {
		t, ok := d.tasks[id]
		if !ok || t.region != region {
			return "", fail("InvalidConversionTaskId.Malformed", "The import task %s does not exist", id)
		}
		t.polls++
		if t.status == "active" && t.polls >= d.PollsToComplete {
			if msg := d.validateDisk(t); msg != "" {
				t.status, t.message = "deleted", msg
			} else {
				s := &doubleSnapshot{id: d.newID("snap"), region: region, tags: map[string]string{}}
				d.snapshots[s.id] = s
				t.status, t.message, t.snapshot = "completed", "", s.id
			}
		}
		progress := ""
		if t.status == "active" {
			progress = "<progress>" + strconv.Itoa(min(99, 100*t.polls/d.PollsToComplete)) + "</progress>"
		}
		fmt.Fprintf(&b, `<item><importTaskId>%s</importTaskId><snapshotTaskDetail><status>%s</status><statusMessage>%s</statusMessage>%s`+
			`<snapshotId>%s</snapshotId><format>%s</format><userBucket><s3Bucket>%s</s3Bucket><s3Key>%s</s3Key></userBucket></snapshotTaskDetail></item>`,
			t.id, t.status, esc(t.message), progress, t.snapshot, t.format, esc(t.bucket), esc(t.key))
	}
	return "<importSnapshotTaskSet>" + b.String() + "</importSnapshotTaskSet>", nil
}

var doubleAMINameRE = regexp.MustCompile(`^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$`)

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

func (d *Double) registerImage(region string, f url.Values) (string, *ec2Error) {
	name := f.Get("Name")
	if !doubleAMINameRE.MatchString(name) {
		return "", fail("InvalidAMIName.Malformed", "AMI name %q is invalid", name)
	}
	for _, im := range d.images {
		if im.region == region && im.name == name {
			return "", fail("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, im.id)
		}
	}
	if f.Get("ImageLocation") != "" {
		return "", fail("InvalidParameterCombination", "this TEST DOUBLE registers EBS-backed images only")
	}
	im := &doubleImage{region: region, name: name, state: "available", tags: map[string]string{},
		arch: f.Get("Architecture"), virt: f.Get("VirtualizationType"), bootMode: f.Get("BootMode"),
		root: f.Get("RootDeviceName"), ena: f.Get("EnaSupport") == "true"}
	if im.arch == "" {
		im.arch = "i386" // EC2's default
	}
	if !oneOf(im.arch, "i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac") {
		return "", fail("InvalidParameterValue", "Value (%s) for parameter architecture is invalid", im.arch)
	}
	if im.virt == "" {
		im.virt = "paravirtual"
	}
	if !oneOf(im.virt, "hvm", "paravirtual") {
		return "", fail("InvalidParameterValue", "Value (%s) for parameter virtualizationType is invalid", im.virt)
	}
	if im.ena && im.virt != "hvm" {
		return "", fail("InvalidParameterCombination", "Enhanced networking with the ENA is not supported for paravirtual images")
	}
	if im.bootMode != "" && !oneOf(im.bootMode, "uefi", "legacy-bios", "uefi-preferred") {
		return "", fail("InvalidParameterValue", "Value (%s) for parameter bootMode is invalid", im.bootMode)
	}
	if im.root == "" {
		return "", fail("MissingParameter", "RootDeviceName is required for EBS-backed images")
	}
	for i := 1; ; i++ {
		p := fmt.Sprintf("BlockDeviceMapping.%d.", i)
		dev, ok := f[p+"DeviceName"]
		if !ok {
			break
		}
		snap := f.Get(p + "Ebs.SnapshotId")
		if snap != "" {
			if s, ok := d.snapshots[snap]; !ok || s.region != region {
				return "", fail("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", snap)
			}
		}
		vt := f.Get(p + "Ebs.VolumeType")
		if vt != "" && !oneOf(vt, "standard", "io1", "io2", "gp2", "gp3", "sc1", "st1") {
			return "", fail("InvalidParameterValue", "Value (%s) for parameter volumeType is invalid", vt)
		}
		if dev[0] == im.root {
			im.snapshot, im.volumeType = snap, vt
		}
	}
	if im.snapshot == "" {
		return "", fail("InvalidBlockDeviceMapping", "The root device %s has no EBS snapshot in the block device mappings", im.root)
	}
	im.id = d.newID("ami")
	d.images[im.id] = im
	return "<imageId>" + im.id + "</imageId>", nil
}

func (d *Double) createTags(region string, f url.Values) (string, *ec2Error) {
	ids := list(f, "ResourceId")
	if len(ids) == 0 {
		return "", fail("MissingParameter", "ResourceId")
	}
	tags := map[string]string{}
	for i := 1; ; i++ {
		k, ok := f[fmt.Sprintf("Tag.%d.Key", i)]
		if !ok {
			break
		}
		if k[0] == "" || strings.HasPrefix(k[0], "aws:") || len(k[0]) > 128 {
			return "", fail("InvalidParameterValue", "tag key %q is not allowed", k[0])
		}
		tags[k[0]] = f.Get(fmt.Sprintf("Tag.%d.Value", i))
	}
	var targets []map[string]string
	for _, id := range ids {
		switch {
		case d.images[id] != nil && d.images[id].region == region:
			targets = append(targets, d.images[id].tags)
		case d.snapshots[id] != nil && d.snapshots[id].region == region:
			targets = append(targets, d.snapshots[id].tags)
		case strings.HasPrefix(id, "snap-"):
			return "", fail("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
		default:
			return "", fail("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
		}
	}
	for _, tg := range targets {
		for k, v := range tags {
			tg[k] = v
		}
	}
	return "<return>true</return>", nil
}

func (d *Double) image(region, id string) (*doubleImage, *ec2Error) {
	im, ok := d.images[id]
	if !ok || im.region != region {
		return nil, fail("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
	}
	return im, nil
}

func (d *Double) modifyImageAttribute(region string, f url.Values) (string, *ec2Error) {
	im, e := d.image(region, f.Get("ImageId"))
	if e != nil {
		return "", e
	}
	for i := 1; ; i++ {
		p := fmt.Sprintf("LaunchPermission.Add.%d.", i)
		user, group := f.Get(p+"UserId"), f.Get(p+"Group")
		if user == "" && group == "" {
			if i == 1 {
				return "", fail("MissingParameter", "LaunchPermission.Add")
			}
			break
		}
		switch {
		case group == "all":
			im.public = true
		case group != "":
			return "", fail("InvalidParameterValue", "group %q", group)
		case !regexp.MustCompile(`^[0-9]{12}$`).MatchString(user):
			return "", fail("InvalidAMIAttributeItemValue", "Invalid attribute item value \"%s\" for userId item type.", user)
		default:
			im.launchUsers = append(im.launchUsers, user)
		}
	}
	return "<return>true</return>", nil
}

func (d *Double) modifySnapshotAttribute(region string, f url.Values) (string, *ec2Error) {
	id := f.Get("SnapshotId")
	s, ok := d.snapshots[id]
	if !ok || s.region != region {
		return "", fail("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	}
	if a := f.Get("Attribute"); a != "createVolumePermission" {
		return "", fail("InvalidParameterValue", "attribute %q", a)
	}
	users := []string{}
	for i := 1; ; i++ {
		u, ok := f[fmt.Sprintf("CreateVolumePermission.Add.%d.UserId", i)]
		if !ok {
			break
		}
		if !regexp.MustCompile(`^[0-9]{12}$`).MatchString(u[0]) {
			return "", fail("InvalidParameterValue", "user id %q", u[0])
		}
		users = append(users, u[0])
	}
	if len(users) == 0 {
		return "", fail("MissingParameter", "CreateVolumePermission.Add")
	}
	s.volumePerms = append(s.volumePerms, users...)
	return "<return>true</return>", nil
}

func (d *Double) copyImage(region string, f url.Values) (string, *ec2Error) {
	srcRegion, srcID, name := f.Get("SourceRegion"), f.Get("SourceImageId"), f.Get("Name")
	if srcRegion == "" || srcID == "" || name == "" {
		return "", fail("MissingParameter", "SourceRegion, SourceImageId and Name are required")
	}
	src, e := d.image(srcRegion, srcID)
	if e != nil {
		return "", e
	}
	if !doubleAMINameRE.MatchString(name) {
		return "", fail("InvalidAMIName.Malformed", "AMI name %q is invalid", name)
	}
	snap := &doubleSnapshot{id: d.newID("snap"), region: region, tags: map[string]string{}}
	d.snapshots[snap.id] = snap
	cp := *src
	cp.id, cp.region, cp.name, cp.state, cp.snapshot = d.newID("ami"), region, name, "pending", snap.id
	cp.tags, cp.launchUsers, cp.public, cp.polls = map[string]string{}, nil, false, 0
	cp.copiedFrom, cp.copiedFromRegion = src.id, srcRegion
	d.images[cp.id] = &cp
	return "<imageId>" + cp.id + "</imageId>", nil
}

func (d *Double) describeImages(region string, f url.Values) (string, *ec2Error) {
	var b strings.Builder
	for _, id := range list(f, "ImageId") {
		im, e := d.image(region, id)
		if e != nil {
			return "", e
		}
		im.polls++
		reason := ""
		if im.state == "pending" && im.polls >= d.PollsToComplete {
			im.state = "available"
			if d.FailCopy {
				im.state = "failed"
			}
		}
		if im.state == "failed" {
			reason = "<stateReason><code>Client.InternalError</code><message>Copy of the snapshot failed (TEST DOUBLE)</message></stateReason>"
		}
		fmt.Fprintf(&b, `<item><imageId>%s</imageId><imageState>%s</imageState><name>%s</name><architecture>%s</architecture>`+
			`<virtualizationType>%s</virtualizationType><rootDeviceType>ebs</rootDeviceType><rootDeviceName>%s</rootDeviceName>`+
			`<blockDeviceMapping><item><deviceName>%s</deviceName><ebs><snapshotId>%s</snapshotId><volumeType>%s</volumeType></ebs></item></blockDeviceMapping>`+
			`<enaSupport>%t</enaSupport><bootMode>%s</bootMode>%s</item>`,
			im.id, im.state, esc(im.name), im.arch, im.virt, im.root, im.root, im.snapshot, im.volumeType, im.ena, im.bootMode, reason)
	}
	return "<imagesSet>" + b.String() + "</imagesSet>", nil
}

// regionImages returns the images of a region, sorted by id.
// Image is what the double holds about one AMI, as tests see it.
type Image struct {
	ID, Region, Name, State    string
	Arch, Virt, BootMode, Root string
	ENA                        bool
	Snapshot, VolumeType       string
	LaunchUsers                []string
	Public                     bool
	Tags                       map[string]string
	CopiedFrom, CopiedRegion   string
}

// Snapshot is what the double holds about one snapshot.
type Snapshot struct {
	ID, Region  string
	VolumePerms []string
	Tags        map[string]string
}

// RegionImages lists the images registered or copied into region, by id.
func (d *Double) RegionImages(region string) []Image {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Image
	for _, im := range d.images {
		if im.region == region {
			out = append(out, Image{ID: im.id, Region: im.region, Name: im.name, State: im.state,
				Arch: im.arch, Virt: im.virt, BootMode: im.bootMode, Root: im.root, ENA: im.ena,
				Snapshot: im.snapshot, VolumeType: im.volumeType, LaunchUsers: append([]string(nil), im.launchUsers...),
				Public: im.public, Tags: maps.Clone(im.tags), CopiedFrom: im.copiedFrom, CopiedRegion: im.copiedFromRegion})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SnapshotByID returns a snapshot, if the double made it.
func (d *Double) SnapshotByID(id string) (Snapshot, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.snapshots[id]
	if !ok {
		return Snapshot{}, false
	}
	return Snapshot{ID: s.id, Region: s.region, VolumePerms: append([]string(nil), s.volumePerms...), Tags: maps.Clone(s.tags)}, true
}

// CallCount is how many requests named action the double received.
func (d *Double) CallCount(action string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.calls {
		if strings.HasSuffix(c, " "+action) {
			n++
		}
	}
	return n
}
