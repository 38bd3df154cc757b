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

// BERRunOptions configure RunBERCurve and RunBERCurveOn.
type BERRunOptions struct {
	// Checkpoint, Dataset (default: the checkpoint's), DataDir and Device say
	// what RunBERCurve loads; RunBERCurveOn takes the model and data loaded.
	Checkpoint string
	Dataset    string
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

// RunBERCurve loads a checkpoint and the test split of its data set
// (LoadCheckpoint) and runs RunBERCurveOn on them.
func RunBERCurve(ctx context.Context, o BERRunOptions) (*BERCurve, error) {
	if err := o.prepare(); err != nil {
		return nil, err
	}
	cd, err := LoadCheckpoint(o.Checkpoint, o.Dataset, o.DataDir, o.Device)
	if err != nil {
		return nil, err
	}
	return runBERCurve(ctx, cd, o)
}

// RunBERCurveOn runs the BER trials of o.BER (see Injector.RunBER) on model l,
// in memory, and the first o.Images images of l's test split, and writes the
// curve, with l's checkpoint label, architecture and data set filled in, to
// o.Out/ber.json. o.Checkpoint, o.Dataset, o.DataDir and o.Device are not read:
// l holds the model and its data. Nothing is written when it fails or ctx is
// cancelled. The model's parameters are left as they were.
func RunBERCurveOn(ctx context.Context, l *Loaded, o BERRunOptions) (*BERCurve, error) {
	if l == nil || l.Model == nil {
		return nil, fmt.Errorf("fault: ber: no model")
	}
	if err := o.prepare(); err != nil {
		return nil, err
	}
	return runBERCurve(ctx, l, o)
}

// prepare checks o, fills in its defaults and sets the thread count.
func (o *BERRunOptions) prepare() error {
	if o.Out == "" {
		return fmt.Errorf("fault: ber: --out DIR is required")
	}
	if o.BatchSize == 0 {
		o.BatchSize = 1000
	}
	if o.BatchSize < 0 {
		return fmt.Errorf("fault: ber: batch size %d: want at least 1", o.BatchSize)
	}
	if _, err := torch.SetThreads(o.Threads); err != nil {
		return err
	}
	return nil
}

// runBERCurve is RunBERCurveOn once o is prepared.
func runBERCurve(ctx context.Context, cd *Loaded, o BERRunOptions) (*BERCurve, error) {
	// fail on an unwritable output before the trials, not after them
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("fault: ber: %w", err)
	}
	var c *BERCurve
	err := torch.Do(func() error {
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
	c.Checkpoint, c.Arch, c.Dataset = cd.Checkpoint, cd.Meta.Arch, cd.Dataset
	if err := c.WriteFile(filepath.Join(o.Out, BERFile)); err != nil {
		return nil, fmt.Errorf("fault: ber: %w", err)
	}
	return c, nil
}
