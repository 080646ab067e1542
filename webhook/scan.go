package webhook

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
)

// scanner reads the few fields the rules need from a JSON document in one pass, skipping
// everything else without decoding it. Skipped values are validated as json.Valid validates
// (strings, escapes, numbers, literals, separators, nesting), so a document read to its end is
// valid JSON, and a truncated or malformed one is an error, never a silent no-op. Raw values are
// sub-slices of the input, never copies.
type scanner struct {
	data []byte
	pos  int
	// keyStart and keyEnd delimit the raw contents of the key object last passed to its member
	// callback, and keyEscaped says whether they hold escapes (the key passed is then decoded).
	keyStart, keyEnd int
	keyEscaped       bool
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
	if s.pos < len(s.data) && s.data[s.pos] > ' ' {
		return s.data[s.pos]
	}
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
// the quotes) and whether it contains escapes. It validates the string as encoding/json does:
// no control character, only JSON's escapes. Eight bytes at a time are tested for a quote, a
// backslash or a control character at once; only a word holding one is walked byte by byte.
func (s *scanner) skipString() ([]byte, bool, error) {
	start := s.pos + 1
	data := s.data
	escaped := false
	i := start
	for {
		for i+8 <= len(data) {
			v := binary.LittleEndian.Uint64(data[i:])
			if m := hasZero(v^(lsb*'"')) | hasZero(v^(lsb*'\\')) | hasLess(v, 0x20); m != 0 {
				// The lowest flagged byte is a true match (a false one only ever follows one).
				i += bits.TrailingZeros64(m) / 8
				goto stop
			}
			i += 8
		}
		for i < len(data) && !stringStop[data[i]] {
			i++
		}
	stop:
		if i >= len(data) {
			s.pos = len(data)
			return nil, false, errTruncated
		}
		switch c := data[i]; c {
		case '"':
			s.pos = i + 1
			return data[start:i], escaped, nil
		case '\\':
			escaped = true
			n, err := s.escape(i)
			if err != nil {
				return nil, false, err
			}
			i += n
		default:
			s.pos = i
			return nil, false, s.errorf("control character %#x in a string", c)
		}
	}
}

// escape checks the escape sequence at data[i] (a backslash) and returns its length.
func (s *scanner) escape(i int) (int, error) {
	data := s.data
	if i+1 >= len(data) {
		s.pos = len(data)
		return 0, errTruncated
	}
	switch data[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
		if i+6 > len(data) {
			s.pos = len(data)
			return 0, errTruncated
		}
		for _, h := range data[i+2 : i+6] {
			if !isHex[h] {
				s.pos = i
				return 0, s.errorf("bad \\u escape")
			}
		}
		return 6, nil
	}
	s.pos = i
	return 0, s.errorf("bad escape \\%c", data[i+1])
}

// lsb has the low bit of every byte set: lsb*c repeats byte c eight times.
const lsb = 0x0101010101010101

// hasZero is non-zero when a byte of v is zero; hasLess when a byte of v is below n (n ≤ 128).
func hasZero(v uint64) uint64         { return (v - lsb) &^ v & (lsb * 0x80) }
func hasLess(v uint64, n byte) uint64 { return (v - lsb*uint64(n)) &^ v & (lsb * 0x80) }

// stringStop marks the bytes that end a run of plain string contents; isHex the hex digits.
var stringStop, isHex [256]bool

func init() {
	for c := range 0x20 {
		stringStop[c] = true
	}
	stringStop['"'], stringStop['\\'] = true, true
	for _, c := range "0123456789abcdefABCDEF" {
		isHex[c] = true
	}
}

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

// skipNullableStr skips a string or null, accepting exactly what nullableStr accepts, without
// copying or decoding the string.
func (s *scanner) skipNullableStr() error {
	switch c := s.peek(); c {
	case 'n':
		return s.literal("null")
	case '"':
		_, _, err := s.skipString()
		return err
	case 0:
		return errTruncated
	default:
		return s.errorf("expected a string, found %q", c)
	}
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

// maxSkipDepth bounds the nesting skip follows, under encoding/json's own limit (10,000, which
// json.Valid enforces) less the few levels the readers descend themselves.
const maxSkipDepth = 9000

// skip skips one value, validating it as json.Valid would, and returns its raw bytes. Nested
// containers are followed with an explicit stack, not recursion.
func (s *scanner) skip() ([]byte, error) {
	c := s.peek()
	begin := s.pos
	if c != '{' && c != '[' {
		if err := s.scalar(); err != nil {
			return nil, err
		}
		return s.data[begin:s.pos], nil
	}
	var buf [64]byte
	stack := buf[:0] // the open containers: '{' or '['
	for {
		// A value starts at s.pos.
		switch c := s.peek(); c {
		case '{', '[':
			if len(stack) == maxSkipDepth {
				return nil, s.errorf("nested deeper than %d", maxSkipDepth)
			}
			s.pos++
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			if s.peek() == closer {
				s.pos++
				break
			}
			stack = append(stack, c)
			if c == '{' {
				if err := s.key(); err != nil {
					return nil, err
				}
			}
			continue
		default:
			if err := s.scalar(); err != nil {
				return nil, err
			}
		}
		// A value has ended: a separator, or the end of containers.
		for {
			if len(stack) == 0 {
				return s.data[begin:s.pos], nil
			}
			top := stack[len(stack)-1]
			c := s.peek()
			if c == ',' {
				s.pos++
				if top == '{' {
					if err := s.key(); err != nil {
						return nil, err
					}
				}
				break
			}
			if (top == '{' && c == '}') || (top == '[' && c == ']') {
				s.pos++
				stack = stack[:len(stack)-1]
				continue
			}
			if c == 0 {
				return nil, errTruncated
			}
			return nil, s.errorf("expected ',' or a closing bracket, found %q", c)
		}
	}
}

// key reads an object key and its colon.
func (s *scanner) key() error {
	if c := s.peek(); c != '"' {
		if c == 0 {
			return errTruncated
		}
		return s.errorf("expected a key, found %q", c)
	}
	if _, _, err := s.skipString(); err != nil {
		return err
	}
	return s.expect(':')
}

// scalar skips a string, number or literal, validating it.
func (s *scanner) scalar() error {
	switch c := s.peek(); {
	case c == 0:
		return errTruncated
	case c == '"':
		_, _, err := s.skipString()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	default:
		return s.errorf("unexpected %q", c)
	}
}

// number skips a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. One that runs to the
// end of the input is truncated: a document here always ends with a bracket.
func (s *scanner) number() error {
	data, i := s.data, s.pos
	digits := func() bool {
		j := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case !digits():
		return s.badNumber(i)
	}
	if i < len(data) && data[i] == '.' {
		i++
		if !digits() {
			return s.badNumber(i)
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if !digits() {
			return s.badNumber(i)
		}
	}
	if i >= len(data) {
		s.pos = len(data)
		return errTruncated
	}
	s.pos = i
	return nil
}

func (s *scanner) badNumber(i int) error {
	if i >= len(s.data) {
		s.pos = len(s.data)
		return errTruncated
	}
	s.pos = i
	return s.errorf("bad number")
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
		keyStart := s.pos + 1
		key, escaped, err := s.skipString()
		if err != nil {
			return err
		}
		s.keyStart, s.keyEnd, s.keyEscaped = keyStart, keyStart+len(key), escaped
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

// knownValue returns the shared constant for a node type or phase Argo writes, so reading one
// allocates no string per node.
func knownValue(raw []byte) (string, bool) {
	switch string(raw) {
	case "Pod":
		return "Pod", true
	case "Container":
		return "Container", true
	case "Steps":
		return "Steps", true
	case "StepGroup":
		return "StepGroup", true
	case "DAG":
		return "DAG", true
	case "TaskGroup":
		return "TaskGroup", true
	case "Retry":
		return "Retry", true
	case "Skipped":
		return "Skipped", true
	case "Suspend":
		return "Suspend", true
	case "HTTP":
		return "HTTP", true
	case "Plugin":
		return "Plugin", true
	case "Pending":
		return "Pending", true
	case "Running":
		return "Running", true
	case "Succeeded":
		return "Succeeded", true
	case "Failed":
		return "Failed", true
	case "Error":
		return "Error", true
	case "Omitted":
		return "Omitted", true
	}
	return "", false
}

// enum reads a string or null, returning a shared constant for the values Argo writes.
func (s *scanner) enum() (string, error) {
	if c := s.peek(); c == '"' {
		begin := s.pos
		raw, escaped, err := s.skipString()
		if err != nil {
			return "", err
		}
		if v, ok := knownValue(raw); ok && !escaped {
			return v, nil
		}
		s.pos = begin
	}
	v, _, err := s.nullableStr()
	return v, err
}
