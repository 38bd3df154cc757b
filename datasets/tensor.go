package datasets

import (
	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Tensors copies the batch into libtorch tensors on dev: images [N, C, H, W]
// float32 and labels [N] int64. It must run inside torch.Do; the caller drops both.
func (b *Batch) Tensors(dev gotch.Device) (x, y *ts.Tensor, err error) {
	x, err = torch.FromFloat32(b.X[:b.N*b.C*b.H*b.W], []int64{int64(b.N), int64(b.C), int64(b.H), int64(b.W)}, dev)
	if err != nil {
		return nil, nil, err
	}
	y, err = torch.FromInt64(b.Y[:b.N], []int64{int64(b.N)}, dev)
	if err != nil {
		_ = x.Drop()
		return nil, nil, err
	}
	return x, y, nil
}
