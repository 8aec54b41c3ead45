package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signalbox/signalbox/xds/bootstrap"
)

// guideFile is the operator guide whose runnable commands TestGuideCommands
// runs.
const guideFile = "../docs/sidecar-guide.md"

// guideMarker, on the line right before a ```sh block (blank lines allowed
// in between), marks the block as runnable.
const guideMarker = "<!-- guide-test -->"

// guideCommand is one command line of a runnable block.
type guideCommand struct {
	line int // line in the guide where the command starts
	text string
	args []string
}

// TestGuideCommands runs every command of the runnable blocks of
// docs/sidecar-guide.md — the ```sh blocks right after a
// "<!-- guide-test -->" line — and validates what they write.
//
// Each command must be `signalbox bootstrap ...`, written literally (no
// variables, substitutions, pipes or redirections: they would not be run as
// written here). It runs with the binary under test in place of `signalbox`,
// in a fresh temporary directory. The guide writes to real host paths such as
// --output /etc/envoy/web-1.yaml; an absolute --output path is rewritten into
// the temporary directory (/etc/envoy/web-1.yaml → $TMP/etc/envoy/web-1.yaml,
// parent directories created), a relative one is relative to it. Every
// bootstrap produced — the --output file, else standard output — is parsed
// with xds/bootstrap.Parse in the command's --format (default yaml), which
// validates it with Envoy's proto validation. The test fails if the guide has
// no runnable block.
func TestGuideCommands(t *testing.T) {
	cmds, err := guideCommands(guideFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) == 0 {
		t.Fatalf("%s: no runnable command (a ```sh block right after a %q line)", guideFile, guideMarker)
	}
	for _, c := range cmds {
		t.Run(fmt.Sprintf("line%d", c.line), func(t *testing.T) {
			runGuideCommand(t, c)
		})
	}
}

func runGuideCommand(t *testing.T, c guideCommand) {
	t.Helper()
	where := fmt.Sprintf("%s:%d: %s", guideFile, c.line, c.text)
	if len(c.args) < 2 || c.args[0] != "signalbox" || c.args[1] != "bootstrap" {
		t.Fatalf("%s\nonly `signalbox bootstrap ...` commands may be in a runnable block", where)
	}
	for _, a := range c.args {
		if strings.ContainsAny(a, "$`|;&<>*?") {
			t.Fatalf("%s\nargument %q needs a shell (variable, substitution, pipe, redirection or glob): write it literally, or move the command out of the runnable block", where, a)
		}
	}
	dir := t.TempDir()
	args := append([]string(nil), c.args[1:]...)
	format := bootstrap.FormatYAML
	output := ""
	for i := 0; i < len(args); i++ {
		name, value, inline := strings.Cut(args[i], "=")
		switch name {
		case "--output", "-o", "--format":
		default:
			continue
		}
		if !inline {
			if i+1 >= len(args) {
				t.Fatalf("%s\n%s has no value", where, name)
			}
			i++
			value = args[i]
		}
		if name == "--format" {
			format = value
			continue
		}
		if value == "" || value == "-" {
			continue // standard output
		}
		output = value
		if filepath.IsAbs(value) {
			output = filepath.Join(dir, value)
			if err := os.MkdirAll(filepath.Dir(output), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if inline {
			args[i] = name + "=" + output
		} else {
			args[i] = output
		}
	}

	cmd := exec.Command(signalboxBin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s\n%v\nstderr:\n%s", where, err, stderr.String())
	}
	produced := stdout.Bytes()
	if output != "" {
		path := output
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		var err error
		if produced, err = os.ReadFile(path); err != nil {
			t.Fatalf("%s\nthe bootstrap it should have written: %v", where, err)
		}
	}
	if len(bytes.TrimSpace(produced)) == 0 {
		t.Fatalf("%s\nproduced no bootstrap", where)
	}
	b, err := bootstrap.Parse(produced, format)
	if err != nil {
		t.Fatalf("%s\nthe bootstrap it wrote does not parse: %v\n%s", where, err, produced)
	}
	if b.GetNode().GetId() == "" || b.GetNode().GetCluster() == "" {
		t.Fatalf("%s\nthe bootstrap has no node id or cluster: %v", where, b.GetNode())
	}
	t.Logf("%s\n→ node %s, cluster %s", where, b.GetNode().GetId(), b.GetNode().GetCluster())
}

// guideCommands reads the runnable commands of a Markdown guide. A marker
// that is not followed by a ```sh block is an error, so a marker never
// silently covers nothing.
func guideCommands(path string) ([]guideCommand, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		cmds    []guideCommand
		marked  bool // saw the marker; waiting for the block
		inBlock bool
		inFence bool // inside some other fenced block
		pending strings.Builder
		start   int
		n       int
	)
	flush := func() error {
		text := strings.Join(strings.Fields(pending.String()), " ")
		pending.Reset()
		if text == "" {
			return nil
		}
		args, err := shellWords(text)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, start, err)
		}
		if len(args) > 0 {
			cmds = append(cmds, guideCommand{line: start, text: text, args: args})
		}
		return nil
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case inBlock:
			if strings.HasPrefix(trimmed, "```") {
				if pending.Len() > 0 {
					if err := flush(); err != nil {
						return nil, err
					}
				}
				inBlock = false
				continue
			}
			if pending.Len() == 0 {
				if trimmed == "" || strings.HasPrefix(trimmed, "#") {
					continue
				}
				start = n
			}
			if strings.HasSuffix(line, `\`) {
				pending.WriteString(strings.TrimSuffix(line, `\`))
				pending.WriteByte(' ')
				continue
			}
			pending.WriteString(line)
			if err := flush(); err != nil {
				return nil, err
			}
		case inFence:
			if strings.HasPrefix(trimmed, "```") {
				inFence = false
			}
		case marked:
			switch {
			case trimmed == "":
			case trimmed == "```sh":
				marked, inBlock = false, true
			default:
				return nil, fmt.Errorf("%s:%d: %q must be followed by a ```sh block, found %q", path, n, guideMarker, line)
			}
		case trimmed == guideMarker:
			marked = true
		case strings.HasPrefix(trimmed, "```"):
			inFence = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if inBlock || marked {
		return nil, fmt.Errorf("%s: the last runnable block is not closed", path)
	}
	return cmds, nil
}

// shellWords splits a command line as a POSIX shell would for the simple
// cases a guide uses: blanks separate words; single quotes keep everything
// literal; double quotes keep everything but \" and \\; a backslash outside
// quotes escapes the next character; an unquoted # starting a word begins a
// comment.
func shellWords(s string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
	)
	end := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t' || r == '\n':
			end()
		case r == '#' && !inWord:
			return words, nil
		case r == '\\':
			if i+1 >= len(rs) {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteRune(rs[i])
			inWord = true
		case r == '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j >= len(rs) {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(string(rs[i+1 : j]))
			i, inWord = j, true
		case r == '"':
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && (rs[j+1] == '"' || rs[j+1] == '\\') {
					j++
				}
				cur.WriteRune(rs[j])
			}
			if j >= len(rs) {
				return nil, errors.New("unterminated double quote")
			}
			i, inWord = j, true
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	end()
	return words, nil
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`signalbox bootstrap --service web`, []string{"signalbox", "bootstrap", "--service", "web"}},
		{`a 'b c' "d \"e\"" f\ g`, []string{"a", "b c", `d "e"`, "f g"}},
		{`a --x='' b # comment`, []string{"a", "--x=", "b"}},
		{`a#b`, []string{"a#b"}},
	} {
		got, err := shellWords(tc.in)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("shellWords(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`a 'b`, `a "b`, `a \`} {
		if _, err := shellWords(bad); err == nil {
			t.Errorf("shellWords(%q): no error", bad)
		}
	}
}
