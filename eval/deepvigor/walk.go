package deepvigor

// walker is one (job, side) of Reference semantics: its two lists of candidate
// values (grid indices), and per image the list it walks and its position.
type walker struct {
	j          *job
	side       int
	big, small []int
	iters      int
	list       [][]int // per image: big, small or nil (fixed value)
	idx        []int
	fixed      []int // per image: the grid index of a fixed value (when list is nil)
	zero       []bool
}

// referenceLists builds NEG_BIG, NEG_SMALL, POS_SMALL and POS_BIG from the
// present thresholds (reference's creating_VVSS_dict): +-1 go into the small
// lists; 1024 is appended to POS_BIG and -1024 to the end of NEG_BIG (out of
// order) when absent.
func referenceLists(d *dist, g grid) (negBig, negSmall, posSmall, posBig []int) {
	one, mone := g.index(1), g.index(-1)
	for i := range g.t {
		if i == g.zero || !d.present(i) {
			continue
		}
		switch {
		case i < mone:
			negBig = append(negBig, i)
		case i < g.zero:
			negSmall = append(negSmall, i)
		case i <= one:
			posSmall = append(posSmall, i)
		default:
			posBig = append(posBig, i)
		}
	}
	if len(posBig) == 0 || posBig[len(posBig)-1] != g.top() {
		posBig = append(posBig, g.top())
	}
	if len(negBig) == 0 || negBig[0] != g.bottom() {
		negBig = append(negBig, g.bottom())
	}
	return negBig, negSmall, posSmall, posBig
}

// walk runs Reference semantics' search (the reference's fixed-length +-1 index
// walk, quirks included; spec section 2.5) and sets each job's nc. activation
// selects the activation analyses' fill values for zero-gradient images.
func (s *searcher) walk(jobs []*job, activation bool) error {
	pr, err := s.probe(jobs)
	if err != nil {
		return err
	}
	var ws []*walker
	for i, j := range jobs {
		negBig, negSmall, posSmall, posBig := referenceLists(j.dist(0), s.g)
		for side := range 2 {
			w := &walker{j: j, side: side, list: make([][]int, s.images), idx: make([]int, s.images),
				fixed: make([]int, s.images), zero: make([]bool, s.images)}
			big, small, far := posBig, posSmall, s.g.top()
			if side == 0 {
				big, small, far = negBig, negSmall, s.g.bottom()
			}
			w.big, w.small = big, small
			// zfill is what zero-gradient images get.
			zfill := far
			if side == 0 && activation {
				zfill = negBig[0]
			}
			p := pr[i][side]
			allZero, anyMis := true, false
			for b := range s.images {
				w.zero[b] = p[b].zeroGrad
				allZero = allZero && p[b].zeroGrad
				anyMis = anyMis || p[b].mis
			}
			for b := range s.images {
				w.fixed[b] = far
			}
			switch {
			case allZero:
				if side == 0 && s.fullActivation {
					for b := range w.fixed {
						w.fixed[b] = negBig[0]
					}
				}
			case !anyMis:
				if len(big) > 1 {
					w.iters = len(big) / 2
					for b := range s.images {
						w.list[b], w.idx[b] = big, len(big)/2
					}
				}
			default:
				w.iters = len(small) / 2
				for b := range s.images {
					// Negative side: images misclassified at -1 walk the big list
					// (inverted with respect to the paper); positive side: images
					// correct at +1 walk the big list.
					l := small
					if (side == 0) == p[b].mis {
						l = big
					}
					if len(l) > 0 { // an empty list crashes the reference
						w.list[b], w.idx[b] = l, len(l)/2
					}
				}
				zfill = far
				if side == 0 && s.fullActivation {
					zfill = negBig[0]
				}
			}
			if !allZero {
				for b := range s.images {
					if w.zero[b] {
						w.fixed[b] = zfill
					}
				}
			}
			ws = append(ws, w)
		}
	}
	for it := 0; ; it++ {
		var qs []query
		var who []*walker
		for _, w := range ws {
			if it >= w.iters {
				continue
			}
			for b := range s.images {
				v := float32(0) // images without a list still ride along, as in the reference
				if l := w.list[b]; l != nil {
					v = s.g.t[l[w.idx[b]]]
				} else {
					v = s.g.t[w.fixed[b]]
				}
				qs = append(qs, query{t: &w.j.t, img: b, d: v})
			}
			who = append(who, w)
		}
		if len(qs) == 0 {
			break
		}
		res, err := s.r.run(qs, false)
		if err != nil {
			return err
		}
		k := 0
		for _, w := range who {
			for b := range s.images {
				mis := res[k].mis
				k++
				l := w.list[b]
				if l == nil {
					continue
				}
				// Toward smaller magnitude when misclassified.
				step := -1
				if mis == (w.side == 0) {
					step = 1
				}
				w.idx[b] = min(max(w.idx[b]+step, 0), len(l)-1)
			}
		}
	}
	// nc = CDF[32+p+] - CDF[10-p-]: the values are grid thresholds, so their
	// indices are exact; the count difference is exact in float64.
	for _, j := range jobs {
		j.nc = make([]float64, s.images)
	}
	for _, w := range ws {
		sgn := 1.0
		if w.side == 0 {
			sgn = -1
		}
		for b := range s.images {
			v := w.fixed[b]
			if w.list[b] != nil && !w.zero[b] {
				v = w.list[b][w.idx[b]]
			}
			w.j.nc[b] += sgn * float64(w.j.dist(0).cdf[v])
		}
	}
	for _, j := range jobs {
		for b := range j.nc {
			if d := j.dist(0); d.n > 0 {
				j.nc[b] /= float64(d.n)
			}
		}
	}
	return nil
}
