package fault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
)

// RunOptions configure RunCampaign.
type RunOptions struct {
	Checkpoint string
	Dataset    string // default: the checkpoint's
	DataDir    string
	Device     gotch.Device
	Threads    int
	Space      Space
	Plan       PlanOptions
	// FaultsFile, when set, replays that fault list instead of sampling.
	FaultsFile     string
	Mode           string // reference or batched
	Images         int    // evaluation images (the first N of the test split)
	ImagesPerFault int    // 0 = every evaluation image
	Block          int    // faults per block (default 8192)
	BatchSize      int    // samples per batched forward (default 1024)
	Shard, Shards  int
	Out            string
	// OnPlan is called with the campaign header before any injection.
	OnPlan func(Header)
	// OnProgress is called after each block.
	OnProgress func(done, total int64, faultsPerSecond float64)
}

// RunCampaign loads a checkpoint and its data, plans (or reads) the faults and
// runs or resumes the campaign into o.Out.
func RunCampaign(ctx context.Context, o RunOptions) (*Summary, error) {
	start := time.Now()
	if o.Mode == "" {
		o.Mode = "batched"
	}
	if o.Mode != "batched" && o.Mode != "reference" {
		return nil, fmt.Errorf("fault: mode %q: want reference or batched", o.Mode)
	}
	if o.Block == 0 {
		o.Block = 8192
	}
	if o.BatchSize == 0 {
		o.BatchSize = 1024
	}
	if o.Shards == 0 {
		o.Shards = 1
	}
	if o.Out == "" {
		return nil, fmt.Errorf("fault: --out DIR is required")
	}
	threads, err := torch.SetThreads(o.Threads)
	if err != nil {
		return nil, err
	}
	cd, err := LoadCheckpoint(o.Checkpoint, o.Dataset, o.DataDir, o.Device)
	if err != nil {
		return nil, err
	}
	m, meta, set, stats := cd.Model, cd.Meta, cd.Set, cd.Stats
	o.Dataset = cd.Dataset
	if o.Images <= 0 || o.Images > set.Len() {
		o.Images = set.Len()
	}
	if o.ImagesPerFault < 0 || o.ImagesPerFault > o.Images {
		return nil, fmt.Errorf("fault: --images-per-fault %d outside 0..%d", o.ImagesPerFault, o.Images)
	}
	h := Header{Checkpoint: o.Checkpoint, Arch: meta.Arch, Dataset: o.Dataset, Mode: o.Mode, Images: o.Images,
		ImagesPerFault: o.ImagesPerFault, Block: o.Block, BatchSize: o.BatchSize, Threads: threads, Shard: o.Shard, Shards: o.Shards}
	var faultAt func(int64) Fault
	if o.FaultsFile != "" {
		list, err := ReadFaults(o.FaultsFile)
		if err != nil {
			return nil, err
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("fault: %s holds no faults", o.FaultsFile)
		}
		raw, err := os.ReadFile(o.FaultsFile)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(raw)
		h.Replay = hex.EncodeToString(sum[:])
		h.Faults = int64(len(list))
		for i := range list {
			list[i].Outcome = nil
			list[i].ID = int64(i)
		}
		faultAt = func(i int64) Fault { return list[i] }
	} else {
		plan, err := NewPlan(m, o.Space, o.Plan)
		if err != nil {
			return nil, err
		}
		h.Plan, h.Faults = plan, plan.Total
		faultAt = plan.Fault
	}
	var inj *Injector
	var ev *EvalSet
	err = torch.Do(func() error {
		if inj, err = NewInjector(m); err != nil {
			return err
		}
		inj.BatchSize = o.BatchSize
		// every fault is checked before any work starts
		groups := map[groupKey]*Fault{}
		for i := int64(0); i < h.Faults; i++ {
			f := faultAt(i)
			if err := inj.Check(&f, o.Images); err != nil {
				if o.FaultsFile != "" {
					return fmt.Errorf("%s line %d: %w", o.FaultsFile, i+1, err)
				}
				return err
			}
			if (i/int64(o.Block))%int64(o.Shards) != int64(o.Shard) {
				continue // another shard's block: no caches for it
			}
			if k := (groupKey{f.Target, f.Layer, f.Param, f.Point}); groups[k] == nil {
				groups[k] = &f
			}
		}
		if ev, err = inj.LoadEvalSet(set, stats, o.Images); err != nil {
			return err
		}
		if o.Mode != "batched" {
			return nil
		}
		reps := make([]*Fault, 0, len(groups))
		for _, f := range groups {
			reps = append(reps, f)
		}
		sort.Slice(reps, func(i, j int) bool { return reps[i].ID < reps[j].ID })
		return inj.Prepare(ev, reps) // golden caches count as setup, not injection
	})
	if err != nil {
		return nil, err
	}
	defer torch.Do(func() error { ev.Drop(); return nil })
	h.GoldenAccuracy = ev.Accuracy()
	if o.OnPlan != nil {
		o.OnPlan(h)
	}
	c := &Campaign{Header: h, Dir: o.Out, Fault: faultAt, OnProgress: o.OnProgress}
	return c.Run(ctx, inj, ev, time.Since(start))
}
