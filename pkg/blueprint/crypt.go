package blueprint

import (
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"strings"
)

// The Weldr API stores only password hashes: a plain-text password in a
// pushed blueprint is replaced by a SHA-512 crypt(3) hash ("$6$"), the
// format /etc/shadow on Debian understands. Go's standard library has no
// crypt(3), so the algorithm (Drepper's "Unix crypt using SHA-256 and
// SHA-512" specification) is implemented here.

const (
	cryptAlphabet   = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	cryptRounds     = 5000 // the default: written without "rounds=" in the hash
	cryptSaltLength = 16
)

// HashPassword returns a SHA-512 crypt hash of password with a random salt.
func HashPassword(password string) (string, error) {
	raw := make([]byte, cryptSaltLength)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	salt := make([]byte, cryptSaltLength)
	for i, b := range raw {
		salt[i] = cryptAlphabet[int(b)%len(cryptAlphabet)]
	}
	return sha512Crypt(password, string(salt), cryptRounds, false), nil
}

// HashPasswords replaces every plain-text user password with its hash (see
// PlaintextPasswords); Push and PushWorkspace do this before storing.
func (b *Blueprint) HashPasswords() error {
	if b.Customizations == nil {
		return nil
	}
	for i := range b.Customizations.User {
		u := &b.Customizations.User[i]
		if u.Password == "" || IsCryptHash(u.Password) {
			continue
		}
		h, err := HashPassword(u.Password)
		if err != nil {
			return fmt.Errorf("hashing the password of %s: %w", u.Name, err)
		}
		u.Password = h
	}
	return nil
}

// sha512Crypt computes "$6$[rounds=N$]salt$hash". explicitRounds writes the
// rounds even when they are the default, as a hash read with them must be
// written again.
func sha512Crypt(password, salt string, rounds int, explicitRounds bool) string {
	p, s := []byte(password), []byte(salt)
	if len(s) > cryptSaltLength {
		s = s[:cryptSaltLength]
	}

	alt := sha512.New()
	alt.Write(p)
	alt.Write(s)
	alt.Write(p)
	altSum := alt.Sum(nil)

	a := sha512.New()
	a.Write(p)
	a.Write(s)
	for n := len(p); n > 0; n -= 64 {
		a.Write(altSum[:min(n, 64)])
	}
	for n := len(p); n > 0; n >>= 1 {
		if n&1 != 0 {
			a.Write(altSum)
		} else {
			a.Write(p)
		}
	}
	c := a.Sum(nil)

	dp := sha512.New()
	for range p {
		dp.Write(p)
	}
	pSeq := repeatTo(dp.Sum(nil), len(p))

	ds := sha512.New()
	for i := 0; i < 16+int(c[0]); i++ {
		ds.Write(s)
	}
	sSeq := repeatTo(ds.Sum(nil), len(s))

	for i := 0; i < rounds; i++ {
		h := sha512.New()
		if i&1 != 0 {
			h.Write(pSeq)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sSeq)
		}
		if i%7 != 0 {
			h.Write(pSeq)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pSeq)
		}
		c = h.Sum(nil)
	}

	var out strings.Builder
	out.WriteString("$6$")
	if explicitRounds || rounds != cryptRounds {
		fmt.Fprintf(&out, "rounds=%d$", rounds)
	}
	out.Write(s)
	out.WriteByte('$')
	// The specification's order of digest bytes, three at a time.
	order := [][3]int{
		{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4}, {47, 5, 26}, {6, 27, 48},
		{28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13},
		{56, 14, 35}, {15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19}, {62, 20, 41},
	}
	for _, o := range order {
		b64(&out, uint(c[o[0]])<<16|uint(c[o[1]])<<8|uint(c[o[2]]), 4)
	}
	b64(&out, uint(c[63]), 2)
	return out.String()
}

func repeatTo(block []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, block[:min(len(block), n-len(out))]...)
	}
	return out
}

func b64(out *strings.Builder, w uint, n int) {
	for ; n > 0; n-- {
		out.WriteByte(cryptAlphabet[w&0x3f])
		w >>= 6
	}
}
