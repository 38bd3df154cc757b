package deepvigor

import (
	"math"
)

// job is one target's search: its error distribution and, once searched, the
// non-critical fraction of its errors for every image.
type job struct {
	t  target
	d  *dist
	nc []float64 // per image, in [0, 1]
}

// searcher finds, for every job and image, which errors misclassify, and sets
// each job's nc. Exact and Reference semantics search differently (see search and
// walk); both start with the +-1 probe and its gradient pre-check.
type searcher struct {
	r         *runner
	g         grid
	images    int
	sem       Semantics
	tailCheck bool
	// fullActivation marks the reference's complete activation analysis, whose
	// skipped images get NEG_BIG[0] instead of -1024.
	fullActivation bool
}

// probe injects +1 and -1 into every job and image, with gradients. It returns
// results indexed [job][side][image], side 0 negative and 1 positive.
func (s *searcher) probe(jobs []*job) ([][2][]result, error) {
	qs := make([]query, 0, len(jobs)*2*s.images)
	for _, j := range jobs {
		for side := range 2 {
			for b := range s.images {
				qs = append(qs, query{t: &j.t, img: b, d: sign(side)})
			}
		}
	}
	res, err := s.r.run(qs, true)
	if err != nil {
		return nil, err
	}
	out := make([][2][]result, len(jobs))
	k := 0
	for i := range jobs {
		for side := range 2 {
			out[i][side] = res[k : k+s.images]
			k += s.images
		}
	}
	return out, nil
}

func sign(side int) float32 {
	if side == 0 {
		return -1
	}
	return 1
}

// state is one (job, side, image) bisection of Exact semantics over cands, grid
// indices in ascending magnitude: lo is the last candidate known to keep the
// class (-1: only zero), hi the first known to misclassify (len: none yet).
type state struct {
	j      *job
	side   int
	img    int
	cands  []int
	lo, hi int
	first  int // a candidate to test before bisecting (-1: none)
	tail   int // 0: no tail test, 1: pending, 2: passed, 3: failed
}

// candidates lists the grid indices on one side whose cut changes the count:
// those with errors just below or just above them, and always +-2^10.
func candidates(d *dist, g grid, side int) []int {
	var c []int
	if side == 1 {
		for i := g.zero + 1; i <= g.top(); i++ {
			if i == g.top() || d.bins[i] > 0 || d.bins[i+1] > 0 {
				c = append(c, i)
			}
		}
		return c
	}
	for i := g.zero - 1; i >= g.bottom(); i-- {
		if i == g.bottom() || d.bins[i] > 0 || d.bins[i+1] > 0 {
			c = append(c, i)
		}
	}
	return c
}

// search runs Exact semantics' search: after the probe, a per-image bisection
// over the candidates finds the last value that keeps the golden class and the
// first that does not; the errors between them (at most one non-empty grid bin)
// count half. An image with a zero gradient that kept its class at +-1 tests
// +-2^10 first, so that a target whose images all pass needs no bisection. With
// the tail check, an image that kept its class up to +-2^10 also tests the
// largest error beyond it and, if it keeps its class there too, counts the tail
// as non-critical.
func (s *searcher) search(jobs []*job) error {
	pr, err := s.probe(jobs)
	if err != nil {
		return err
	}
	var sts []*state
	for i, j := range jobs {
		for side := range 2 {
			cands := candidates(j.d, s.g, side)
			one := s.g.index(sign(side))
			k1 := 0 // first candidate at or beyond magnitude 1
			for k1 < len(cands) && absIndex(s.g, cands[k1]) < absIndex(s.g, one) {
				k1++
			}
			for b := range s.images {
				st := &state{j: j, side: side, img: b, cands: cands, first: -1}
				p := pr[i][side][b]
				if p.mis {
					st.lo, st.hi = -1, k1
				} else {
					st.lo, st.hi = k1-1, len(cands)
					if k1 < len(cands) && cands[k1] == one {
						st.lo = k1
					}
					if p.zeroGrad && st.hi-st.lo > 1 {
						st.first = len(cands) - 1
					}
				}
				sts = append(sts, st)
			}
		}
	}
	for {
		var qs []query
		var who []*state
		var mids []int
		for _, st := range sts {
			if st.hi-st.lo <= 1 {
				continue
			}
			mid := (st.lo + st.hi) / 2
			if st.first >= 0 {
				mid, st.first = st.first, -1
			}
			qs = append(qs, query{t: &st.j.t, img: st.img, d: s.g.t[st.cands[mid]]})
			who = append(who, st)
			mids = append(mids, mid)
		}
		if len(qs) == 0 {
			break
		}
		res, err := s.r.run(qs, false)
		if err != nil {
			return err
		}
		for k, st := range who {
			if res[k].mis {
				st.hi = mids[k]
			} else {
				st.lo = mids[k]
			}
		}
	}
	if s.tailCheck {
		var qs []query
		var who []*state
		for _, st := range sts {
			d := st.j.d
			if st.hi < len(st.cands) {
				continue
			}
			v := d.max
			if st.side == 0 {
				v = d.min
			}
			if (st.side == 1 && d.upperTail() == 0) || (st.side == 0 && d.lowerTail() == 0) {
				continue
			}
			qs = append(qs, query{t: &st.j.t, img: st.img, d: v})
			who = append(who, st)
		}
		if len(qs) > 0 {
			res, err := s.r.run(qs, false)
			if err != nil {
				return err
			}
			for k, st := range who {
				st.tail = 3
				if !res[k].mis {
					st.tail = 2
				}
			}
		}
	}
	// nc counts the errors below the positive cut minus those below the negative
	// one (whole or half counts, exact in float64), then becomes a fraction.
	for _, j := range jobs {
		j.nc = make([]float64, s.images)
	}
	for _, st := range sts {
		d := st.j.d
		near := s.g.zero
		if st.lo >= 0 {
			near = st.cands[st.lo]
		}
		var c float64
		switch {
		case st.hi < len(st.cands):
			c = (float64(d.cdf[near]) + float64(d.cdf[st.cands[st.hi]])) / 2
		case st.side == 1:
			c = float64(d.cdf[s.g.top()])
			if st.tail == 2 {
				c += float64(d.upperTail())
			}
		default:
			c = float64(d.lowerTail())
			if st.tail == 2 {
				c = 0
			}
		}
		if st.side == 0 {
			c = -c
		}
		st.j.nc[st.img] += c
	}
	for _, j := range jobs {
		for b := range j.nc {
			if j.d.n > 0 {
				j.nc[b] = math.Max(0, j.nc[b]/float64(j.d.n))
			}
		}
	}
	return nil
}

// absIndex is the position of a grid index in ascending magnitude on its side.
func absIndex(g grid, i int) int {
	if i < g.zero {
		return g.zero - i
	}
	return i - g.zero
}
