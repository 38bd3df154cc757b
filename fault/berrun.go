package fault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
)

// BERFile is the name of the curve RunBERCurve writes in its output directory.
const BERFile = "ber.json"

// BERRunOptions configure RunBERCurve.
type BERRunOptions struct {
	Checkpoint string
	Dataset    string // default: the checkpoint's
	DataDir    string
	Device     gotch.Device
	Threads    int
	Images     int // evaluation images: the first N of the test split (<= 0: all)
	BatchSize  int // images per forward pass (default 1000)
	BER        BEROptions
	// Out is the output directory; the curve goes to Out/ber.json.
	Out string
	// OnProgress is called after each trial.
	OnProgress func(done, total int)
}

// RunBERCurve loads a checkpoint and the first o.Images images of its data set's
// test split, runs the BER trials of o.BER on them (see Injector.RunBER) and writes
// the curve, with its checkpoint, architecture and data set filled in, to
// o.Out/ber.json. Nothing is written when it fails or ctx is cancelled.
func RunBERCurve(ctx context.Context, o BERRunOptions) (*BERCurve, error) {
	if o.Out == "" {
		return nil, fmt.Errorf("fault: ber: --out DIR is required")
	}
	if o.BatchSize == 0 {
		o.BatchSize = 1000
	}
	if o.BatchSize < 0 {
		return nil, fmt.Errorf("fault: ber: batch size %d: want at least 1", o.BatchSize)
	}
	if _, err := torch.SetThreads(o.Threads); err != nil {
		return nil, err
	}
	cd, err := LoadCheckpoint(o.Checkpoint, o.Dataset, o.DataDir, o.Device)
	if err != nil {
		return nil, err
	}
	o.Dataset = cd.Dataset
	// fail on an unwritable output before the trials, not after them
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("fault: ber: %w", err)
	}
	var c *BERCurve
	err = torch.Do(func() error {
		inj, ev, err := cd.EvalSet(o.Images, o.BatchSize)
		if err != nil {
			return err
		}
		defer ev.Drop()
		c, err = inj.RunBER(ctx, ev, o.BER, o.OnProgress)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.Checkpoint, c.Arch, c.Dataset = o.Checkpoint, cd.Meta.Arch, o.Dataset
	if err := c.WriteFile(filepath.Join(o.Out, BERFile)); err != nil {
		return nil, fmt.Errorf("fault: ber: %w", err)
	}
	return c, nil
}
