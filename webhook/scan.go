package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// scanner reads the few fields the rules need from a JSON document in one pass, skipping
// everything else without decoding it: strings are skipped with bytes.IndexByte, containers by
// depth. Skipped values are checked for structure (balanced containers, terminated strings), so a
// truncated or malformed body is an error, not a silent no-op; what is inside a skipped string or
// number is not validated, because nothing reads it. Raw values are sub-slices of the input, never
// copies.
type scanner struct {
	data []byte
	pos  int
}

// errTruncated reports input that ends inside a value.
var errTruncated = errors.New("unexpected end of JSON input")

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: %s", s.pos, fmt.Sprintf(format, args...))
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *scanner) expect(c byte) error {
	switch got := s.peek(); got {
	case c:
		s.pos++
		return nil
	case 0:
		return errTruncated
	default:
		return s.errorf("expected %q, found %q", c, got)
	}
}

// skipString skips the string starting at s.pos (a '"') and returns its raw contents (between
// the quotes) and whether it contains escapes. Short strings (most keys and values) are walked
// byte by byte; longer ones are searched with bytes.IndexByte.
func (s *scanner) skipString() ([]byte, bool, error) {
	start := s.pos + 1
	data := s.data
	escaped := false
	i := start
	for limit := min(len(data), start+16); i < limit; i++ {
		switch data[i] {
		case '"':
			s.pos = i + 1
			return data[start:i], escaped, nil
		case '\\':
			escaped = true
			i++
		}
	}
	for i < len(data) {
		j := bytes.IndexByte(data[i:], '"')
		if j < 0 {
			break
		}
		i += j
		n := 0
		for k := i - 1; k >= start && data[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			s.pos = i + 1
			return data[start:i], escaped || bytes.IndexByte(data[start:i], '\\') >= 0, nil
		}
		i++
	}
	s.pos = len(data)
	return nil, false, errTruncated
}

// structural marks the bytes that matter when skipping a container.
var structural = [256]bool{'"': true, '{': true, '[': true, '}': true, ']': true}

// str reads a JSON string value.
func (s *scanner) str() (string, error) {
	if c := s.peek(); c != '"' {
		if c == 0 {
			return "", errTruncated
		}
		return "", s.errorf("expected a string, found %q", c)
	}
	begin := s.pos
	raw, escaped, err := s.skipString()
	if err != nil {
		return "", err
	}
	if !escaped {
		return string(raw), nil
	}
	var out string
	if err := json.Unmarshal(s.data[begin:s.pos], &out); err != nil {
		return "", s.errorf("bad string: %v", err)
	}
	return out, nil
}

// nullableStr reads a string or null; present is false for null.
func (s *scanner) nullableStr() (v string, present bool, err error) {
	if s.peek() == 'n' {
		return "", false, s.literal("null")
	}
	v, err = s.str()
	return v, err == nil, err
}

// boolean reads true, false or null (null reads as absent).
func (s *scanner) boolean() (v, present bool, err error) {
	switch s.peek() {
	case 't':
		return true, true, s.literal("true")
	case 'f':
		return false, true, s.literal("false")
	case 'n':
		return false, false, s.literal("null")
	case 0:
		return false, false, errTruncated
	}
	return false, false, s.errorf("expected a boolean, found %q", s.data[s.pos])
}

func (s *scanner) literal(word string) error {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(word)) {
		if len(s.data)-s.pos < len(word) {
			return errTruncated
		}
		return s.errorf("expected %s", word)
	}
	s.pos += len(word)
	return nil
}

// skip skips one value and returns its raw bytes.
func (s *scanner) skip() ([]byte, error) {
	c := s.peek()
	begin := s.pos
	switch {
	case c == 0:
		return nil, errTruncated
	case c == '"':
		if _, _, err := s.skipString(); err != nil {
			return nil, err
		}
	case c == '{' || c == '[':
		depth := 0
		data := s.data
		for i := s.pos; i < len(data); i++ {
			if !structural[data[i]] {
				continue
			}
			switch data[i] {
			case '"':
				s.pos = i
				if _, _, err := s.skipString(); err != nil {
					return nil, err
				}
				i = s.pos - 1
			case '{', '[':
				depth++
			default: // '}', ']'
				depth--
				if depth == 0 {
					s.pos = i + 1
					return data[begin:s.pos], nil
				}
			}
		}
		s.pos = len(data)
		return nil, errTruncated
	case c == 't' || c == 'f' || c == 'n':
		word := map[byte]string{'t': "true", 'f': "false", 'n': "null"}[c]
		if err := s.literal(word); err != nil {
			return nil, err
		}
	case c == '-' || (c >= '0' && c <= '9'):
		for s.pos < len(s.data) && bytes.IndexByte([]byte("+-.0123456789eE"), s.data[s.pos]) >= 0 {
			s.pos++
		}
		if s.pos == len(s.data) {
			return nil, errTruncated
		}
	default:
		return nil, s.errorf("unexpected %q", c)
	}
	return s.data[begin:s.pos], nil
}

// object calls member for each key of the object at s.pos; member must consume the value (or
// call s.skip). A null reads as an empty object.
func (s *scanner) object(member func(key []byte) error) error {
	if s.peek() == 'n' {
		return s.literal("null")
	}
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		if c := s.peek(); c != '"' {
			if c == 0 {
				return errTruncated
			}
			return s.errorf("expected a key, found %q", c)
		}
		key, escaped, err := s.skipString()
		if err != nil {
			return err
		}
		if escaped { // keys we read never contain escapes; compare the decoded form anyway
			var k string
			if err := json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &k); err != nil {
				return s.errorf("bad key: %v", err)
			}
			key = []byte(k)
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		switch c := s.peek(); c {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		case 0:
			return errTruncated
		default:
			return s.errorf("expected ',' or '}', found %q", c)
		}
	}
}

// array calls element for each element of the array at s.pos. A null reads as empty.
func (s *scanner) array(element func() error) error {
	if s.peek() == 'n' {
		return s.literal("null")
	}
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := element(); err != nil {
			return err
		}
		switch c := s.peek(); c {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		case 0:
			return errTruncated
		default:
			return s.errorf("expected ',' or ']', found %q", c)
		}
	}
}

// end checks that only whitespace follows.
func (s *scanner) end() error {
	if c := s.peek(); c != 0 {
		return s.errorf("unexpected %q after the document", c)
	}
	return nil
}

// stringMap reads an object of strings (labels). null reads as nil.
func (s *scanner) stringMap() (map[string]string, error) {
	if s.peek() == 'n' {
		return nil, s.literal("null")
	}
	m := map[string]string{}
	err := s.object(func(key []byte) error {
		v, err := s.str()
		m[string(key)] = v
		return err
	})
	return m, err
}

// knownValues are the node types and phases Argo writes; reading them returns these constants
// instead of allocating a string per node.
var knownValues = map[string]string{}

func init() {
	for _, v := range []string{"Pod", "Container", "Steps", "StepGroup", "DAG", "TaskGroup", "Retry", "Skipped", "Suspend", "HTTP", "Plugin",
		"Pending", "Running", "Succeeded", "Failed", "Error", "Omitted"} {
		knownValues[v] = v
	}
}

// enum reads a string or null, returning a shared constant for the values Argo writes.
func (s *scanner) enum() (string, error) {
	if c := s.peek(); c == '"' {
		begin := s.pos
		raw, escaped, err := s.skipString()
		if err != nil {
			return "", err
		}
		if v, ok := knownValues[string(raw)]; ok && !escaped {
			return v, nil
		}
		s.pos = begin
	}
	v, _, err := s.nullableStr()
	return v, err
}
