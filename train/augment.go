package train

import (
	"math/rand/v2"

	"github.com/faultline/faultline/datasets"
)

// augmenter applies random horizontal flips and random crops (4-pixel-free shifts
// of up to pad pixels, filled with the normalised value of a black pixel) to a
// normalised batch in place. Randomness derives from (seed, epoch, step) alone.
type augmenter struct {
	pad  int
	fill []float32 // per channel: (0 - mean) / std
	buf  []float32
}

func newAugmenter(stats datasets.Stats, pad int) *augmenter {
	a := &augmenter{pad: pad}
	for c := range stats.Mean {
		a.fill = append(a.fill, -stats.Mean[c]/stats.Std[c])
	}
	return a
}

func (a *augmenter) apply(b *datasets.Batch, seed int64, epoch, step int) {
	rng := rand.New(rand.NewPCG(uint64(seed)^0x9e3779b97f4a7c15, uint64(epoch)<<32|uint64(step)))
	hw := b.H * b.W
	if cap(a.buf) < hw {
		a.buf = make([]float32, hw)
	}
	buf := a.buf[:hw]
	for i := 0; i < b.N; i++ {
		flip := rng.IntN(2) == 1
		dy, dx := rng.IntN(2*a.pad+1)-a.pad, rng.IntN(2*a.pad+1)-a.pad
		for c := 0; c < b.C; c++ {
			img := b.X[(i*b.C+c)*hw : (i*b.C+c+1)*hw]
			for y := 0; y < b.H; y++ {
				for x := 0; x < b.W; x++ {
					sx := x
					if flip {
						sx = b.W - 1 - x
					}
					sy, sx := y+dy, sx+dx
					if sy < 0 || sy >= b.H || sx < 0 || sx >= b.W {
						buf[y*b.W+x] = a.fill[c]
					} else {
						buf[y*b.W+x] = img[sy*b.W+sx]
					}
				}
			}
			copy(img, buf)
		}
	}
}
