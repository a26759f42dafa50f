package blueprint

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

func TestSHA512Crypt(t *testing.T) {
	// The known answers of the SHA-crypt specification's own test set.
	cases := []struct {
		password, salt string
		rounds         int
		explicit       bool
		want           string
	}{
		{"Hello world!", "saltstring", 5000, false,
			"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"Hello world!", "saltstringsaltstring", 10000, true,
			"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
	}
	for _, c := range cases {
		if got := sha512Crypt(c.password, c.salt, c.rounds, c.explicit); got != c.want {
			t.Errorf("sha512Crypt(%q, %q, %d) = %s\nwant %s", c.password, c.salt, c.rounds, got, c.want)
		}
	}
}

// TestHashPasswordAgainstOpenSSL checks fresh hashes (random salt, long
// and multi-byte passwords) with openssl's own implementation, if present.
func TestHashPasswordAgainstOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	for _, pw := range []string{"hunter2", "ünïcødé päss", strings.Repeat("long-", 30)} {
		h, err := HashPassword(pw)
		if err != nil {
			t.Fatal(err)
		}
		if !IsCryptHash(h) || !strings.HasPrefix(h, "$6$") {
			t.Fatalf("HashPassword = %q", h)
		}
		salt := strings.Split(h, "$")[2]
		out, err := exec.Command("openssl", "passwd", "-6", "-salt", salt, pw).Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(out)); h != want {
			t.Errorf("password %q: ours %s, openssl %s", pw, h, want)
		}
	}
}

func TestPushHashesPasswords(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, t.TempDir())
	src := "name = \"a\"\n[[customizations.user]]\nname = \"u\"\npassword = \"hunter2\"\n" +
		"[[customizations.user]]\nname = \"v\"\npassword = \"$6$salt$keptasgiven\"\n"
	b := mustParse(t, src)
	push(t, s, b)
	if b.Customizations.User[0].Password != "hunter2" {
		t.Errorf("Push modified the caller's blueprint")
	}
	got, err := s.GetCommitted(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	u, v := got.Customizations.User[0], got.Customizations.User[1]
	salt := strings.Split(u.Password, "$")
	if len(salt) != 4 || u.Password != sha512Crypt("hunter2", salt[2], cryptRounds, false) {
		t.Errorf("stored password %q is not the hash of hunter2", u.Password)
	}
	if v.Password != "$6$salt$keptasgiven" {
		t.Errorf("a hash was changed: %q", v.Password)
	}
	if err := s.PushWorkspace(ctx, mustParse(t, src)); err != nil {
		t.Fatal(err)
	}
	w, _, _ := s.Get(ctx, "a")
	if len(w.PlaintextPasswords()) != 0 {
		t.Errorf("workspace copy keeps a plain-text password")
	}
}
