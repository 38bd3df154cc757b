package datasets

import (
	"math"
	"slices"
	"testing"
)

// epochIndices runs one epoch and returns the dataset indices in visiting order and
// the sizes of the batches.
func epochIndices(t *testing.T, l *Loader, epoch int) (idx, sizes []int) {
	t.Helper()
	it := l.Epoch(epoch)
	for b, ok := it.Next(); ok; b, ok = it.Next() {
		if len(b.X) != b.N*b.C*b.H*b.W || len(b.Y) != b.N || len(b.Index) != b.N {
			t.Fatalf("batch lengths X %d Y %d Index %d for N=%d", len(b.X), len(b.Y), len(b.Index), b.N)
		}
		for j, i := range b.Index {
			if b.Y[j] != int64(l.Set().Labels[i]) {
				t.Fatalf("label of index %d: got %d want %d", i, b.Y[j], l.Set().Labels[i])
			}
		}
		idx = append(idx, b.Index...)
		sizes = append(sizes, b.N)
	}
	if len(sizes) != l.Batches(epoch) {
		t.Fatalf("epoch %d gave %d batches, Batches says %d", epoch, len(sizes), l.Batches(epoch))
	}
	return idx, sizes
}

func TestLoaderEpochs(t *testing.T) {
	set := Synthetic(SyntheticConfig{N: 103, C: 2, H: 3, W: 3, Classes: 5, Seed: 1})
	tests := []struct {
		name      string
		opts      LoaderOptions
		wantSizes []int
	}{
		{"in order", LoaderOptions{BatchSize: 25}, []int{25, 25, 25, 25, 3}},
		{"shuffled", LoaderOptions{BatchSize: 25, Shuffle: true, Seed: 9}, []int{25, 25, 25, 25, 3}},
		{"drop last", LoaderOptions{BatchSize: 25, Shuffle: true, DropLast: true}, []int{25, 25, 25, 25}},
		{"exact", LoaderOptions{BatchSize: 103, DropLast: true}, []int{103}},
		{"one big batch", LoaderOptions{BatchSize: 1000}, []int{103}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLoader(set, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			idx, sizes := epochIndices(t, l, 0)
			if !slices.Equal(sizes, tc.wantSizes) {
				t.Errorf("batch sizes %v, want %v", sizes, tc.wantSizes)
			}
			seen := make(map[int]int)
			for _, i := range idx {
				seen[i]++
			}
			for i, n := range seen {
				if n != 1 || i < 0 || i >= set.N {
					t.Errorf("index %d seen %d times", i, n)
				}
			}
			if !tc.opts.DropLast && len(seen) != set.N {
				t.Errorf("epoch visited %d of %d images", len(seen), set.N)
			}
			if sorted := slices.IsSorted(idx); sorted == tc.opts.Shuffle {
				t.Errorf("Shuffle=%v but order sorted=%v", tc.opts.Shuffle, sorted)
			}
		})
	}
}

func TestLoaderShuffleSeededByEpoch(t *testing.T) {
	set := Synthetic(SyntheticConfig{N: 64, C: 1, H: 2, W: 2, Classes: 4, Seed: 1})
	newL := func(seed int64) *Loader {
		l, err := NewLoader(set, LoaderOptions{BatchSize: 10, Shuffle: true, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b := newL(5), newL(5)
	// Epoch 3 of a fresh loader equals epoch 3 after running 0..2.
	for e := range 3 {
		epochIndices(t, a, e)
	}
	a3, _ := epochIndices(t, a, 3)
	b3, _ := epochIndices(t, b, 3)
	if !slices.Equal(a3, b3) {
		t.Error("epoch 3 depends on the epochs run before it")
	}
	if a2, _ := epochIndices(t, a, 2); slices.Equal(a2, a3) {
		t.Error("epochs 2 and 3 have the same order")
	}
	if c3, _ := epochIndices(t, newL(6), 3); slices.Equal(c3, a3) {
		t.Error("seeds 5 and 6 give the same order")
	}
}

func TestLoaderNormalisation(t *testing.T) {
	set := &Set{N: 3, C: 2, H: 1, W: 2, Classes: 2,
		Pixels: []uint8{0, 255, 51, 102, 255, 0, 0, 0, 128, 1, 2, 3}, Labels: []uint8{1, 0, 1}}
	st := Stats{Mean: []float32{0.5, 0.2}, Std: []float32{0.25, 0.5}}
	norm := func(p uint8, c int) float32 {
		return float32((float64(p)/255 - float64(st.Mean[c])) / float64(st.Std[c]))
	}
	for _, tc := range []struct {
		name  string
		stats Stats
		want  func(p uint8, c int) float32
	}{
		{"stats", st, norm},
		{"zero stats", Stats{}, func(p uint8, _ int) float32 { return float32(p) / 255 }},
	} {
		l, err := NewLoader(set, LoaderOptions{BatchSize: 2, Stats: tc.stats})
		if err != nil {
			t.Fatal(err)
		}
		it := l.Epoch(0)
		for b, ok := it.Next(); ok; b, ok = it.Next() {
			for j, i := range b.Index {
				for k, p := range set.Image(i) {
					c := k / 2
					if got, want := b.X[j*4+k], tc.want(p, c); math.Abs(float64(got-want)) > 1e-6 {
						t.Errorf("%s: image %d byte %d: got %v want %v", tc.name, i, k, got, want)
					}
				}
			}
		}
	}
	// Hand-computed: channel 0 maps 0 to (0-0.5)/0.25 = -2 and 255 to 2; channel 1
	// maps 51 to (0.2-0.2)/0.5 = 0.
	l, _ := NewLoader(set, LoaderOptions{BatchSize: 3, Stats: st})
	b, _ := l.Epoch(0).Next()
	for k, want := range map[int]float32{0: -2, 1: 2, 2: 0, 4: 2} {
		if math.Abs(float64(b.X[k]-want)) > 1e-6 {
			t.Errorf("X[%d] = %v, want %v", k, b.X[k], want)
		}
	}
}

func TestLoaderReusesBuffers(t *testing.T) {
	set := Synthetic(SyntheticConfig{N: 40, C: 1, H: 4, W: 4, Classes: 4, Seed: 1})
	l, err := NewLoader(set, LoaderOptions{BatchSize: 8, Shuffle: true})
	if err != nil {
		t.Fatal(err)
	}
	it := l.Epoch(1)
	it.Next()
	allocs := testing.AllocsPerRun(1, func() { it.Next() })
	if allocs != 0 {
		t.Errorf("Next allocates %v times per batch", allocs)
	}
}

func TestNewLoaderErrors(t *testing.T) {
	set := Synthetic(SyntheticConfig{N: 10, C: 1, H: 2, W: 2, Classes: 2, Seed: 1})
	bad := *set
	bad.Labels = bad.Labels[:5]
	for _, tc := range []struct {
		name string
		set  *Set
		opts LoaderOptions
		want string
	}{
		{"nil set", nil, LoaderOptions{BatchSize: 1}, "nil set"},
		{"batch size", set, LoaderOptions{}, "batch size 0"},
		{"drop all", set, LoaderOptions{BatchSize: 11, DropLast: true}, "leaves no batch of the 10 images"},
		{"stats channels", set, LoaderOptions{BatchSize: 2, Stats: Stats{Mean: []float32{0, 0}, Std: []float32{1, 1}}}, "for 1 channels"},
		{"bad set", &bad, LoaderOptions{BatchSize: 2}, "5 labels for 10 images"},
		{"empty", &Set{C: 1, H: 1, W: 1, Classes: 1}, LoaderOptions{BatchSize: 2}, "empty"},
	} {
		_, err := NewLoader(tc.set, tc.opts)
		wantErr(t, err, tc.want)
	}
}

func BenchmarkLoaderNext(b *testing.B) {
	set := Synthetic(SyntheticConfig{N: 2560, C: 1, H: 28, W: 28, Classes: 10, Seed: 1})
	l, err := NewLoader(set, LoaderOptions{BatchSize: 256, Shuffle: true, Stats: Stats{Mean: []float32{0.3}, Std: []float32{0.35}}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(256 * 28 * 28)
	it := l.Epoch(0)
	for i := 0; i < b.N; i++ {
		if _, ok := it.Next(); !ok {
			it = l.Epoch(i)
			it.Next()
		}
	}
}
