package npz

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
)

const (
	magic = "\x93NUMPY"
	// maxHeaderLen bounds the header dictionary. NumPy refuses more than 10000 bytes by
	// default; this is generous but keeps a lying length field harmless.
	maxHeaderLen = 1 << 20
	// maxDims is NumPy 2's limit on the number of dimensions.
	maxDims = 64
	// arrayAlign is the alignment NumPy pads the header to.
	arrayAlign = 64
	// growthDigits is NumPy's spare room after the header for growing the first axis.
	growthDigits = 21
)

// header is the parsed header dictionary of an .npy file.
type header struct {
	descr   string
	dtype   dtype
	order   binary.ByteOrder
	fortran bool
	shape   []int
	count   int // product of shape; 1 for a 0-d array
}

// formatShape renders a shape the way Python prints a tuple: (), (3,), (2, 3).
func formatShape(shape []int) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(d))
	}
	if len(shape) == 1 {
		b.WriteByte(',')
	}
	b.WriteByte(')')
	return b.String()
}

// encodeHeader returns the magic, version, length and padded header dictionary exactly
// as NumPy's np.save writes them: keys sorted, spare room for the growth axis, padding
// with spaces and a final '\n' to a multiple of 64 bytes, version 1.0 unless the header
// needs the 4-byte length of version 2.0.
func encodeHeader(descr string, shape []int) []byte {
	dict := "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + formatShape(shape) + ", }"
	if len(shape) > 0 {
		dict += strings.Repeat(" ", max(0, growthDigits-len(strconv.Itoa(shape[0]))))
	}
	hlen := len(dict) + 1 // the trailing '\n'
	for _, v := range []struct {
		major  byte
		prefix int
	}{{1, 10}, {2, 12}} {
		pad := arrayAlign - (v.prefix+hlen)%arrayAlign
		total := hlen + pad
		if v.major == 1 && total > math.MaxUint16 {
			continue
		}
		out := make([]byte, 0, v.prefix+total)
		out = append(out, magic...)
		out = append(out, v.major, 0)
		if v.major == 1 {
			out = binary.LittleEndian.AppendUint16(out, uint16(total))
		} else {
			out = binary.LittleEndian.AppendUint32(out, uint32(total))
		}
		out = append(out, dict...)
		out = append(out, strings.Repeat(" ", pad)...)
		return append(out, '\n')
	}
	panic("unreachable")
}

// parseHeader parses the header dictionary, for example
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// It accepts what NumPy's reader accepts from files NumPy and other writers produce
// (any key order, either quote, optional trailing comma, Python 2 'L' suffixes,
// missing final newline) and nothing that would need a Python interpreter.
func parseHeader(s string) (header, error) {
	var h header
	p := &parser{s: s}
	p.space()
	if err := p.expect('{'); err != nil {
		return h, err
	}
	seen := map[string]bool{}
	for {
		p.space()
		if p.peek() == '}' {
			break
		}
		key, err := p.str()
		if err != nil {
			return h, fmt.Errorf("key: %w", err)
		}
		if seen[key] {
			return h, fmt.Errorf("repeated key %q", key)
		}
		seen[key] = true
		p.space()
		if err := p.expect(':'); err != nil {
			return h, err
		}
		p.space()
		switch key {
		case "descr":
			if p.peek() == '[' {
				return h, fmt.Errorf("structured dtypes are not supported")
			}
			if h.descr, err = p.str(); err != nil {
				return h, fmt.Errorf("descr: %w", err)
			}
			if h.dtype, h.order, err = parseDescr(h.descr); err != nil {
				return h, err
			}
		case "fortran_order":
			switch w := p.word(); w {
			case "True":
				h.fortran = true
			case "False":
			default:
				return h, fmt.Errorf("fortran_order is %q, not True or False", w)
			}
		case "shape":
			if h.shape, err = p.tuple(); err != nil {
				return h, fmt.Errorf("shape: %w", err)
			}
		default:
			return h, fmt.Errorf("unknown key %q", key)
		}
		p.space()
		if p.peek() != ',' {
			break
		}
		p.i++
	}
	if err := p.expect('}'); err != nil {
		return h, err
	}
	p.space()
	if p.i != len(s) {
		return h, fmt.Errorf("%q after the dictionary", clip(s[p.i:]))
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return h, fmt.Errorf("missing key %q", k)
		}
	}
	h.count = 1
	for _, d := range h.shape {
		if d != 0 && h.count > math.MaxInt/h.dtype.width/d {
			return h, fmt.Errorf("shape %s is too large", formatShape(h.shape))
		}
		h.count *= d
	}
	return h, nil
}

// parser is a cursor over the header text.
type parser struct {
	s string
	i int
}

// peek returns the next byte, or 0 at the end.
func (p *parser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// space skips the blanks Python allows between tokens.
func (p *parser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

// expect consumes c or reports what is there instead.
func (p *parser) expect(c byte) error {
	if p.peek() != c {
		return fmt.Errorf("want %q at offset %d, found %q", c, p.i, clip(p.s[p.i:]))
	}
	p.i++
	return nil
}

// str reads a quoted string without escapes (none occur in valid headers).
func (p *parser) str() (string, error) {
	q := p.peek()
	if q != '\'' && q != '"' {
		return "", fmt.Errorf("want a quoted string at offset %d, found %q", p.i, clip(p.s[p.i:]))
	}
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", fmt.Errorf("unterminated string at offset %d", p.i)
	}
	v := p.s[p.i+1 : p.i+1+end]
	if strings.IndexByte(v, '\\') >= 0 {
		return "", fmt.Errorf("escaped string %q is not supported", clip(v))
	}
	p.i += end + 2
	return v, nil
}

// word reads a run of ASCII letters (True, False).
func (p *parser) word() string {
	start := p.i
	for c := p.peek(); ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z'); c = p.peek() {
		p.i++
	}
	return p.s[start:p.i]
}

// tuple reads a Python tuple of non-negative integers: (), (3,), (2, 3), (2, 3,).
func (p *parser) tuple() ([]int, error) {
	if err := p.expect('('); err != nil {
		return nil, err
	}
	shape := []int{}
	for {
		p.space()
		if p.peek() == ')' {
			p.i++
			return shape, nil
		}
		if len(shape) == maxDims {
			return nil, fmt.Errorf("more than %d dimensions", maxDims)
		}
		d, err := p.dim()
		if err != nil {
			return nil, err
		}
		shape = append(shape, d)
		p.space()
		switch p.peek() {
		case ',':
			p.i++
		case ')':
			if len(shape) == 1 {
				return nil, fmt.Errorf("(%d) is not a tuple (a 1-d shape is written (%d,))", d, d)
			}
		default:
			return nil, fmt.Errorf("want ',' or ')' at offset %d, found %q", p.i, clip(p.s[p.i:]))
		}
	}
}

// dim reads one dimension: decimal digits with an optional Python 2 'L' suffix.
func (p *parser) dim() (int, error) {
	start := p.i
	if c := p.peek(); c == '-' || c == '+' {
		p.i++
	}
	for c := p.peek(); '0' <= c && c <= '9'; c = p.peek() {
		p.i++
	}
	text := p.s[start:p.i]
	if p.peek() == 'L' {
		p.i++
	}
	if text == "" || text == "-" || text == "+" {
		return 0, fmt.Errorf("want a dimension at offset %d, found %q", start, clip(p.s[start:]))
	}
	d, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("dimension %s is out of range", clip(text))
	}
	if d < 0 {
		return 0, fmt.Errorf("negative dimension %d", d)
	}
	if d > math.MaxInt {
		return 0, fmt.Errorf("dimension %d is out of range", d)
	}
	return int(d), nil
}

// clip shortens text quoted in error messages.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
