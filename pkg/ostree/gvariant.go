package ostree

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Just enough of GVariant's serialization format (the one OSTree's
// metadata objects and file headers use) to read dirtrees and commits
// and to write an archive file header, so that an export can walk and
// write a repo without one ostree process per object.

// offsetSize is the width of the framing offsets of a container whose
// serialized size is n.
func offsetSize(n int) int {
	switch {
	case n == 0:
		return 0
	case n <= 0xff:
		return 1
	case n <= 0xffff:
		return 2
	case uint64(n) <= 0xffffffff:
		return 4
	}
	return 8
}

func readOffset(b []byte) int {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return int(v)
}

func alignUp(n, a int) int { return (n + a - 1) &^ (a - 1) }

// gvMember describes one member of a tuple: its alignment and, when it
// has a fixed size, that size (0 means variable-sized).
type gvMember struct{ align, fixed int }

var (
	gvVar   = gvMember{1, 0} // s, ay, a(...) of alignment 1
	gvVar8  = gvMember{8, 0} // a{sv}
	gvUint6 = gvMember{8, 8} // t
)

// splitTuple returns the serialized members of a tuple. Every
// variable-sized member but the last has its end in the framing offsets,
// stored from the end of the data backwards.
func splitTuple(data []byte, ms []gvMember) ([][]byte, error) {
	osz := offsetSize(len(data))
	frame := len(data) // start of the offsets read so far
	pos := 0
	out := make([][]byte, len(ms))
	for i, m := range ms {
		pos = alignUp(pos, m.align)
		var end int
		switch {
		case m.fixed > 0:
			end = pos + m.fixed
		case i == len(ms)-1:
			end = frame
		default:
			if frame-osz < 0 || osz == 0 {
				return nil, fmt.Errorf("gvariant tuple: no framing offset for member %d", i)
			}
			frame -= osz
			end = readOffset(data[frame : frame+osz])
		}
		if pos > end || end > frame {
			return nil, fmt.Errorf("gvariant tuple: member %d out of bounds (%d..%d of %d)", i, pos, end, frame)
		}
		out[i] = data[pos:end]
		pos = end
	}
	return out, nil
}

// splitArray returns the elements of an array of variable-sized
// elements of alignment 1.
func splitArray(data []byte) ([][]byte, error) {
	if len(data) == 0 {
		return nil, nil
	}
	osz := offsetSize(len(data))
	table := readOffset(data[len(data)-osz:])
	if table > len(data) || (len(data)-table)%osz != 0 {
		return nil, fmt.Errorf("gvariant array: bad offset table at %d of %d", table, len(data))
	}
	n := (len(data) - table) / osz
	out := make([][]byte, n)
	start := 0
	for i := 0; i < n; i++ {
		end := readOffset(data[table+i*osz : table+(i+1)*osz])
		if end < start || end > table {
			return nil, fmt.Errorf("gvariant array: element %d out of bounds", i)
		}
		out[i] = data[start:end]
		start = end
	}
	return out, nil
}

func gvString(b []byte) (string, error) {
	if len(b) == 0 || b[len(b)-1] != 0 {
		return "", fmt.Errorf("gvariant string not NUL-terminated")
	}
	return string(b[:len(b)-1]), nil
}

func gvChecksum(b []byte) (string, error) {
	if len(b) != 32 {
		return "", fmt.Errorf("checksum of %d bytes, want 32", len(b))
	}
	return hex.EncodeToString(b), nil
}

// treeFile and treeDir are the entries of a dirtree object.
type treeFile struct{ name, checksum string }
type treeDir struct{ name, tree, meta string }

// parseDirtree reads a dirtree object: (a(say)a(sayay)).
func parseDirtree(data []byte) ([]treeFile, []treeDir, error) {
	parts, err := splitTuple(data, []gvMember{gvVar, gvVar})
	if err != nil {
		return nil, nil, err
	}
	fe, err := splitArray(parts[0])
	if err != nil {
		return nil, nil, err
	}
	de, err := splitArray(parts[1])
	if err != nil {
		return nil, nil, err
	}
	files := make([]treeFile, len(fe))
	for i, e := range fe {
		m, err := splitTuple(e, []gvMember{gvVar, gvVar})
		if err != nil {
			return nil, nil, err
		}
		if files[i].name, err = gvString(m[0]); err != nil {
			return nil, nil, err
		}
		if files[i].checksum, err = gvChecksum(m[1]); err != nil {
			return nil, nil, err
		}
	}
	dirs := make([]treeDir, len(de))
	for i, e := range de {
		m, err := splitTuple(e, []gvMember{gvVar, gvVar, gvVar})
		if err != nil {
			return nil, nil, err
		}
		if dirs[i].name, err = gvString(m[0]); err != nil {
			return nil, nil, err
		}
		if dirs[i].tree, err = gvChecksum(m[1]); err != nil {
			return nil, nil, err
		}
		if dirs[i].meta, err = gvChecksum(m[2]); err != nil {
			return nil, nil, err
		}
	}
	return files, dirs, nil
}

// commitInfo is what an export needs of a commit object:
// (a{sv}aya(say)sstayay), metadata, parent, related, subject, body,
// timestamp (big-endian), root dirtree, root dirmeta.
type commitInfo struct {
	timestamp  uint64
	tree, meta string
}

func parseCommit(data []byte) (*commitInfo, error) {
	m, err := splitTuple(data, []gvMember{gvVar8, gvVar, gvVar, gvVar, gvVar, gvUint6, gvVar, gvVar})
	if err != nil {
		return nil, err
	}
	c := &commitInfo{timestamp: binary.BigEndian.Uint64(m[5])}
	if c.tree, err = gvChecksum(m[6]); err != nil {
		return nil, err
	}
	if c.meta, err = gvChecksum(m[7]); err != nil {
		return nil, err
	}
	return c, nil
}

// archiveHeader is the header of an archive-mode content object (a
// .filez): the size of the variant (big-endian u32), 4 bytes of padding,
// then (tuuuusa(ayay)) with size, uid, gid, mode and rdev big-endian,
// the symlink target, and the xattrs as serialized.
func archiveHeader(size uint64, uid, gid, mode uint32, target string, xattrs []byte) []byte {
	body := make([]byte, 24, 24+len(target)+1+len(xattrs)+8)
	binary.BigEndian.PutUint64(body[0:], size)
	binary.BigEndian.PutUint32(body[8:], uid)
	binary.BigEndian.PutUint32(body[12:], gid)
	binary.BigEndian.PutUint32(body[16:], mode)
	// rdev stays 0: OSTree stores no device nodes.
	body = append(body, target...)
	body = append(body, 0)
	strEnd := len(body)
	body = append(body, xattrs...)
	// One framing offset (the string's end), as wide as the whole needs.
	osz := 1
	for offsetSize(len(body)+osz) > osz {
		osz *= 2
	}
	for i := 0; i < osz; i++ {
		body = append(body, byte(uint64(strEnd)>>(8*i)))
	}
	out := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(out, uint32(len(body)))
	return append(out, body...)
}
