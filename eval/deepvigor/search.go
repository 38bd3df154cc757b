package deepvigor

import (
	"math"
)

// job is one target's search: its error distributions (one per image, or one
// pooled over the images) and, once searched, the non-critical fraction of its
// errors for every image. g, when set, is the job's own grid (exactGrid),
// which its distributions are binned over instead of the searcher's.
type job struct {
	t  target
	ds []dist
	g  *grid
	nc []float64 // per image, in [0, 1]
}

// gridOr is the job's grid, or def when it has none of its own.
func (j *job) gridOr(def grid) grid {
	if j.g != nil {
		return *j.g
	}
	return def
}

// dist is image b's error distribution.
func (j *job) dist(b int) *dist {
	if len(j.ds) == 1 {
		return &j.ds[0]
	}
	return &j.ds[b]
}

// searcher finds, for every job and image, which errors misclassify, and sets
// each job's nc. Exact and Reference semantics search differently (see search
// and walk): Exact from the layer's slopes, Reference from the +-1 probe and
// its gradient pre-check.
type searcher struct {
	r      *runner
	sl     *slopes // Exact: the layer's slopes at the golden point
	g      grid
	images int
	sem    Semantics
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

// state is one (job, side, image) search of Exact semantics over cands, grid
// indices in ascending magnitude (inf: one more, virtual, candidate after them:
// the side's infinite errors, tested as an infinite delta): lo is the last
// candidate known to keep the class (-1: only zero), hi the first known to
// misclassify (n: none yet), guess the candidate the linear model predicts to
// misclassify first (n: none), tests the tests run so far.
type state struct {
	j      *job
	side   int
	img    int
	cands  []int
	inf    bool
	lo, hi int
	guess  int
	tests  int
	last   int // the candidate tested last
}

// n is the number of candidates, the virtual infinite one included.
func (st *state) n() int {
	if st.inf {
		return len(st.cands) + 1
	}
	return len(st.cands)
}

// next picks the candidate to test, or -1 when the search is over (the cut
// lies between neighbouring candidates). The first test is the predicted candidate, or the largest when the
// linear model predicts no crossing (or nothing: flat), so that an image it
// calls safe usually costs one forward pass. After a predicted crossing, a
// failure tests the candidate just below it and a success the largest, so
// that a good prediction costs two. Everything else is bisection.
func (st *state) next() int {
	if st.hi-st.lo <= 1 {
		return -1
	}
	n := st.n()
	if st.tests == 0 {
		if st.guess < 0 {
			return n - 1
		}
		return min(st.guess, n-1)
	}
	if st.tests == 1 && st.guess >= 0 {
		if st.hi == st.last {
			return st.hi - 1 // > lo: the interval is wider than one
		}
		if st.hi == n {
			return n - 1
		}
	}
	return (st.lo + st.hi) / 2
}

// value is the delta candidate k stands for.
func (st *state) value(g grid, k int) float32 {
	if k == len(st.cands) {
		return float32(math.Inf(2*st.side - 1))
	}
	return g.t[st.cands[k]]
}

// candidates lists the grid indices on one side whose cut changes the count:
// those with errors just below or just above them, and always the outermost
// threshold (+-2^10, or +-MaxFloat32 on a tail grid); inf says whether the
// side has errors beyond the outermost threshold that only an infinite delta
// reaches (tail grids only: there they are the infinite errors).
func candidates(d *dist, g grid, side int) (c []int, inf bool) {
	if side == 1 {
		for i := g.zero + 1; i <= g.top(); i++ {
			if i == g.top() || d.bins[i] > 0 || d.bins[i+1] > 0 {
				c = append(c, i)
			}
		}
		return c, g.tail && d.upperTail() > 0
	}
	for i := g.zero - 1; i >= g.bottom(); i-- {
		if i == g.bottom() || d.bins[i] > 0 || d.bins[i+1] > 0 {
			c = append(c, i)
		}
	}
	return c, g.tail && d.lowerTail() > 0
}

// search runs Exact semantics' search. Per job, side and image, the
// candidates are the image's own errors' grid thresholds; a search tests the
// candidate the layer's slopes predict first to misclassify (see next), then
// narrows the cut to two neighbouring candidates: the last that keeps the
// golden class and the first that does not. The errors between them (at most
// one non-empty grid bin) count half. On a tail grid the errors up to the
// largest finite float32 are candidates like the others and the infinite ones
// are decided by an infinite delta; otherwise errors of magnitude 2^10 and
// more are critical.
func (s *searcher) search(jobs []*job) error {
	var sts []*state
	for _, j := range jobs {
		for side := range 2 {
			for b := range s.images {
				d := j.dist(b)
				g := j.gridOr(s.g)
				cands, inf := candidates(d, g, side)
				st := &state{j: j, side: side, img: b, cands: cands, inf: inf, lo: -1}
				st.hi = st.n()
				st.guess = st.n()
				p, flat := s.sl.crossing(&j.t, b, s.r.golden[b], side)
				if flat {
					st.guess = -1
				} else if !math.IsInf(p, 1) {
					st.guess = 0
					for st.guess < len(cands) && float64(absf(g.t[cands[st.guess]])) < p {
						st.guess++
					}
				}
				sts = append(sts, st)
			}
		}
	}
	for {
		var qs []query
		var who []*state
		for _, st := range sts {
			k := st.next()
			if k < 0 {
				continue
			}
			st.last = k
			qs = append(qs, query{t: &st.j.t, img: st.img, d: st.value(st.j.gridOr(s.g), k)})
			who = append(who, st)
		}
		if len(qs) == 0 {
			break
		}
		res, err := s.r.run(qs, false)
		if err != nil {
			return err
		}
		for k, st := range who {
			st.tests++
			if res[k].mis {
				st.hi = st.last
			} else {
				st.lo = st.last
			}
		}
	}
	// nc counts the errors below the positive cut minus those below the negative
	// one (whole or half counts, exact in float64), then becomes a fraction.
	for _, j := range jobs {
		j.nc = make([]float64, s.images)
	}
	for _, st := range sts {
		c := st.count(st.j.gridOr(s.g))
		if st.side == 0 {
			c = -c
		}
		st.j.nc[st.img] += c
	}
	for _, j := range jobs {
		for b := range j.nc {
			if d := j.dist(b); d.n > 0 {
				j.nc[b] = math.Max(0, j.nc[b]/float64(d.n))
			}
		}
	}
	return nil
}

// below is the cumulative count at candidate k: the errors below it (NaN
// excluded); for the virtual infinite candidate, every error (positive side)
// or none (negative side); at k = -1, the errors below zero, and on the
// positive side the zeros too.
func (st *state) below(g grid, k int) float64 {
	d := st.j.dist(st.img)
	switch {
	case k < 0 && st.side == 1:
		return float64(d.cdf[g.zero] + d.zeros) // the zero errors change nothing
	case k < 0:
		return float64(d.cdf[g.zero])
	case k == len(st.cands) && st.side == 1:
		return float64(d.cdf[g.top()] + d.upperTail())
	case k == len(st.cands):
		return 0
	}
	return float64(d.cdf[st.cands[k]])
}

// count is the state's cumulative count at its cut: at the last passing
// candidate when nothing failed, when the first failure is the infinite
// candidate, or on an exact grid (whose candidates are the errors themselves,
// each tested); else halfway between the cut's two candidates.
func (st *state) count(g grid) float64 {
	if st.hi == st.n() || st.hi == len(st.cands) || g.exact {
		return st.below(g, st.lo)
	}
	return (st.below(g, st.lo) + st.below(g, st.hi)) / 2
}

func absf(v float32) float32 { return float32(math.Abs(float64(v))) }
