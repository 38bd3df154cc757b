package datasets

import (
	"fmt"
	"math/rand/v2"
)

// LoaderOptions configures a Loader.
type LoaderOptions struct {
	BatchSize int   // images per batch, > 0
	Shuffle   bool  // visit the images in a random order drawn from (Seed, epoch)
	Seed      int64 // shuffling seed
	DropLast  bool  // skip the last batch when it is smaller than BatchSize
	Stats     Stats // per-channel normalisation; zero Stats give pixel/255
}

// Loader serves a Set as batches of normalised float32 images.
// A Loader is read-only after NewLoader, so several goroutines may iterate it at once,
// each with its own Iter.
type Loader struct {
	set  *Set
	opts LoaderOptions
	lut  [][256]float32 // per channel: pixel level -> normalised value
}

// Batch is a batch of images in NCHW order with their labels.
type Batch struct {
	X          []float32 // N*C*H*W normalised pixels
	Y          []int64   // N labels
	N, C, H, W int
	Index      []int // the data-set index of each image
}

// NewLoader checks set and opts and returns a Loader.
func NewLoader(set *Set, opts LoaderOptions) (*Loader, error) {
	if set == nil {
		return nil, fmt.Errorf("datasets: loader: nil set")
	}
	if err := set.Validate(); err != nil {
		return nil, fmt.Errorf("datasets: loader: %w", err)
	}
	if set.N == 0 {
		return nil, fmt.Errorf("datasets: loader: %s is empty", set.label())
	}
	if opts.BatchSize <= 0 {
		return nil, fmt.Errorf("datasets: loader: batch size %d (want > 0)", opts.BatchSize)
	}
	if opts.DropLast && opts.BatchSize > set.N {
		return nil, fmt.Errorf("datasets: loader: batch size %d with DropLast leaves no batch of the %d images of %s",
			opts.BatchSize, set.N, set.label())
	}
	if opts.Stats.Mean != nil || opts.Stats.Std != nil {
		if err := opts.Stats.Validate(set.C); err != nil {
			return nil, fmt.Errorf("datasets: loader: %w", err)
		}
	}
	return &Loader{set: set, opts: opts, lut: opts.Stats.lut(set.C)}, nil
}

// Set returns the data set the loader serves.
func (l *Loader) Set() *Set { return l.set }

// Batches returns the number of batches in epoch. It is the same for every epoch.
func (l *Loader) Batches(epoch int) int {
	if l.opts.DropLast {
		return l.set.N / l.opts.BatchSize
	}
	return (l.set.N + l.opts.BatchSize - 1) / l.opts.BatchSize
}

// Order returns the order in which epoch visits the data set: 0..N-1, or with Shuffle
// a permutation drawn from a generator seeded by (Seed, epoch) alone, so any epoch
// can be reproduced without running the ones before it.
func (l *Loader) Order(epoch int) []int {
	if !l.opts.Shuffle {
		order := make([]int, l.set.N)
		for i := range order {
			order[i] = i
		}
		return order
	}
	return rand.New(rand.NewPCG(uint64(l.opts.Seed), uint64(epoch))).Perm(l.set.N)
}

// Epoch returns an iterator over the batches of epoch.
func (l *Loader) Epoch(epoch int) *Iter {
	bs := min(l.opts.BatchSize, l.set.N)
	return &Iter{
		l:       l,
		order:   l.Order(epoch),
		batches: l.Batches(epoch),
		x:       make([]float32, bs*l.set.ImageSize()),
		y:       make([]int64, bs),
		index:   make([]int, bs),
	}
}

// Iter walks the batches of one epoch. Its buffers are allocated once: the Batch
// returned by Next is overwritten by the following call to Next, so copy what must
// outlive it.
type Iter struct {
	l       *Loader
	order   []int
	batches int
	next    int // index of the next batch
	batch   Batch
	x       []float32 // buffers behind batch, reused by every Next
	y       []int64
	index   []int
}

// Next returns the next batch and true, or nil and false after the last batch.
// The Batch and its slices are valid until the next call to Next.
func (it *Iter) Next() (*Batch, bool) {
	if it.next >= it.batches {
		return nil, false
	}
	bs := it.l.opts.BatchSize
	idx := it.order[it.next*bs : min((it.next+1)*bs, len(it.order))]
	it.next++

	s, n := it.l.set, len(idx)
	sz, plane := s.ImageSize(), s.H*s.W
	it.batch = Batch{X: it.x[:n*sz], Y: it.y[:n], Index: it.index[:n], N: n, C: s.C, H: s.H, W: s.W}
	b := &it.batch
	copy(b.Index, idx)
	for j, i := range idx {
		b.Y[j] = int64(s.Labels[i])
		img, x := s.Image(i), b.X[j*sz:(j+1)*sz]
		for c := range s.C {
			t := &it.l.lut[c]
			xc := x[c*plane : (c+1)*plane]
			for k, p := range img[c*plane : (c+1)*plane] {
				xc[k] = t[p]
			}
		}
	}
	return b, true
}
