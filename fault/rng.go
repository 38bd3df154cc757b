package fault

import "math/bits"

// Every random choice of a campaign derives from (seed, fault index) alone, never
// from one shared stream, so any subset of a campaign can be recomputed by itself.

// mix is SplitMix64's finaliser: a bijective, well-mixing 64-bit hash.
func mix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// stream is a small deterministic generator for one fault.
type stream struct{ s uint64 }

// newStream returns the generator of fault index i under seed, for a purpose tag
// (so different choices about the same fault are independent).
func newStream(seed int64, tag uint64, i int64) *stream {
	return &stream{s: mix(mix(uint64(seed)^mix(tag)) ^ uint64(i))}
}

func (r *stream) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix(r.s)
}

// intn returns a uniform integer in [0, n) (n > 0), without modulo bias.
func (r *stream) intn(n int64) int64 {
	un := uint64(n)
	for {
		hi, lo := bits.Mul64(r.next(), un)
		if lo >= un || lo >= (-un)%un {
			return int64(hi)
		}
	}
}

// permutation is a keyed bijection of [0, n): a balanced Feistel network on the
// smallest even number of bits that covers n, with cycle walking. Position i of a
// campaign draws element perm(i), so draws are without replacement and each is
// computed alone.
type permutation struct {
	n        int64
	halfBits uint
	mask     uint64
	keys     [4]uint64
}

func newPermutation(n int64, seed int64, tag uint64) permutation {
	p := permutation{n: n}
	b := uint(bits.Len64(uint64(max(n-1, 1))))
	p.halfBits = (b + 1) / 2
	p.mask = 1<<p.halfBits - 1
	for r := range p.keys {
		p.keys[r] = mix(uint64(seed) ^ mix(tag+uint64(r)*0x51ed27))
	}
	return p
}

func (p permutation) round(x uint64) uint64 {
	l, r := x>>p.halfBits, x&p.mask
	for _, k := range p.keys {
		l, r = r, l^(mix(r^k)&p.mask)
	}
	return l<<p.halfBits | r
}

// at returns the i-th element of the permutation (0 <= i < n).
func (p permutation) at(i int64) int64 {
	x := uint64(i)
	for {
		x = p.round(x)
		if x < uint64(p.n) {
			return int64(x)
		}
	}
}
