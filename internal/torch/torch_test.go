package torch

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"
)

// do runs fn on the torch thread and fails the test on error.
func do(t testing.TB, fn func() error) {
	t.Helper()
	if err := Do(fn); err != nil {
		t.Fatal(err)
	}
}

// gotch v0.8.0 read the C result of bool-returning ops as an 8-byte Go int, so
// Equal(ones, ones) came back false nearly every time.
func TestEqualOfEqualTensorsIsTrue(t *testing.T) {
	do(t, func() error {
		ones, err := ts.Ones([]int64{4, 5}, gotch.Float, gotch.CPU)
		if err != nil {
			return err
		}
		defer ones.Drop()
		zeros, err := ts.Zeros([]int64{4, 5}, gotch.Float, gotch.CPU)
		if err != nil {
			return err
		}
		defer zeros.Drop()
		for i := 0; i < 10000; i++ {
			eq, err := ones.Equal(ones, false)
			if err != nil {
				return err
			}
			ne, err := ones.Equal(zeros, false)
			if err != nil {
				return err
			}
			if !eq || ne {
				t.Fatalf("iteration %d: Equal(ones, ones) = %v, Equal(ones, zeros) = %v", i, eq, ne)
			}
		}
		return nil
	})
}

// gotch v0.8.0's GradSetEnabled always returned false as the previous state.
func TestGradSetEnabledReturnsPrevious(t *testing.T) {
	do(t, func() error {
		for _, tc := range []struct{ set, wantPrev bool }{{true, true}, {false, true}, {false, false}, {true, false}, {true, true}} {
			prev, err := SetGradEnabled(tc.set)
			if err != nil {
				return err
			}
			if prev != tc.wantPrev {
				t.Errorf("SetGradEnabled(%v) returned previous %v, want %v", tc.set, prev, tc.wantPrev)
			}
		}
		return nil
	})
}

// tracksGrad reports whether an op on a leaf that requires grad records a graph.
func tracksGrad() (bool, error) {
	x, err := ts.Ones([]int64{3}, gotch.Float, gotch.CPU)
	if err != nil {
		return false, err
	}
	defer x.Drop()
	leaf, err := x.SetRequiresGrad(true, false)
	if err != nil {
		return false, err
	}
	defer leaf.Drop()
	y, err := leaf.MulScalar(ts.FloatScalar(2), false)
	if err != nil {
		return false, err
	}
	defer y.Drop()
	return y.RequiresGrad()
}

// Grad mode is per OS thread in libtorch; with gotch's ts.NoGrad on migrating
// goroutines, later ops silently ran without grad. NoGrad on the torch thread must
// leave grad on afterwards, also after 10,000 sections entered from many goroutines.
func TestGradModeRestoredAfterManyNoGradSections(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1250; i++ {
				err := Do(func() error {
					return NoGrad(func() error {
						on, err := tracksGrad()
						if err == nil && on {
							err = errors.New("grad tracked inside NoGrad")
						}
						return err
					})
				})
				if err != nil {
					errs <- err
					return
				}
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	do(t, func() error {
		for i := 0; i < 256; i++ {
			on, err := tracksGrad()
			if err != nil {
				return err
			}
			if !on {
				t.Fatalf("op %d ran without grad after the no-grad sections", i)
			}
		}
		return nil
	})
}

func TestNoGradRestoresOnErrorAndNesting(t *testing.T) {
	do(t, func() error {
		boom := errors.New("boom")
		if err := NoGrad(func() error {
			return NoGrad(func() error { return boom })
		}); !errors.Is(err, boom) {
			t.Errorf("NoGrad returned %v, want boom", err)
		}
		on, err := GradEnabled()
		if err != nil {
			return err
		}
		if !on {
			t.Error("grad mode off after a failed NoGrad section")
		}
		return nil
	})
}

func TestGradHelpersRefuseOtherThreads(t *testing.T) {
	if _, err := SetGradEnabled(false); err == nil || !strings.Contains(err.Error(), "outside torch.Do") {
		t.Fatalf("SetGradEnabled off the torch thread: err = %v", err)
	}
}

func TestDoNestedAndPanics(t *testing.T) {
	ran := false
	do(t, func() error {
		return Do(func() error { ran = OnTorchThread(); return nil })
	})
	if !ran {
		t.Error("nested Do did not run on the torch thread")
	}
	err := Do(func() error { panic("kaboom") })
	if err == nil || !strings.Contains(err.Error(), "kaboom") {
		t.Fatalf("panic in Do: err = %v", err)
	}
	do(t, func() error { return nil }) // the torch goroutine survived
}

// gotch v0.8.0's AtDevice read a 4-byte C int as an 8-byte Go int.
func TestDeviceOfCPUTensor(t *testing.T) {
	do(t, func() error {
		x, err := ts.Zeros([]int64{2}, gotch.Float, gotch.CPU)
		if err != nil {
			return err
		}
		defer x.Drop()
		for i := 0; i < 1000; i++ {
			if d, err := x.Device(); err != nil || d != gotch.CPU {
				return fmt.Errorf("device of a CPU tensor = %v", d)
			}
		}
		return nil
	})
}

// Wrappers that do not compile against the installed libtorch are stubs that
// return an error, never a crash.
func TestStubbedWrapperReturnsError(t *testing.T) {
	do(t, func() error {
		x, err := ts.Zeros([]int64{2, 2}, gotch.Float, gotch.CPU)
		if err != nil {
			return err
		}
		defer x.Drop()
		_, err = x.SqueezeDims([]int64{0}, false) // atg_squeeze_dims is stubbed for libtorch 1.13
		if err == nil || !strings.Contains(err.Error(), "not available in this libtorch") {
			t.Errorf("stubbed SqueezeDims: err = %v", err)
		}
		return nil
	})
}

// gotch v0.8.0's Path.Sub appended to the parent's slice, so siblings at depth 3
// could overwrite each other's names.
func TestVarNamesAtDepthThree(t *testing.T) {
	do(t, func() error {
		vs := nn.NewVarStore(gotch.CPU)
		block := vs.Root().Sub("layer1").Sub("0")
		a, b := block.Sub("conv1"), block.Sub("conv2")
		if _, err := a.NewVar("weight", []int64{1}, nn.NewConstInit(1)); err != nil {
			return err
		}
		if _, err := b.NewVar("weight", []int64{1}, nn.NewConstInit(2)); err != nil {
			return err
		}
		if _, err := a.NewVar("bias", []int64{1}, nn.NewConstInit(3)); err != nil {
			return err
		}
		got := map[string]bool{}
		for name := range vs.Variables() {
			got[name] = true
		}
		for _, want := range []string{"layer1.0.conv1.weight", "layer1.0.conv2.weight", "layer1.0.conv1.bias"} {
			if !got[want] {
				t.Errorf("missing variable %q; have %v", want, got)
			}
		}
		if len(got) != 3 {
			t.Errorf("want 3 variables, have %v", got)
		}
		return nil
	})
}

func TestThreadsAndSeed(t *testing.T) {
	n, err := SetThreads(1)
	if err != nil || n != 1 {
		t.Fatalf("SetThreads(1) = %d, %v", n, err)
	}
	n, err = SetThreads(0)
	if err != nil || n != runtime.NumCPU() {
		t.Fatalf("SetThreads(0) = %d, %v; want %d", n, err, runtime.NumCPU())
	}
	if _, err := SetThreads(-1); err == nil {
		t.Error("SetThreads(-1) accepted")
	}
	draw := func() []float32 {
		var v []float32
		do(t, func() error {
			ManualSeed(42)
			x, err := ts.Randn([]int64{8}, gotch.Float, gotch.CPU)
			if err != nil {
				return err
			}
			defer x.Drop()
			v, err = Float32s(x)
			return err
		})
		return v
	}
	a, b := draw(), draw()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different draws: %v vs %v", a, b)
		}
	}
}

func TestParseDevice(t *testing.T) {
	if d, err := ParseDevice("cpu"); err != nil || d != gotch.CPU || DeviceName(d) != "cpu" {
		t.Errorf("cpu: %v %v", d, err)
	}
	if n := DeviceName(gotch.CudaBuilder(1)); n != "cuda:1" {
		t.Errorf("DeviceName(cuda 1) = %q", n)
	}
	for _, bad := range []string{"tpu", "cuda:x", "cuda:-1"} {
		if _, err := ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q) accepted", bad)
		}
	}
	if (gotch.Cuda{}).IsAvailable() {
		t.Skip("CUDA present: the no-CUDA error is not testable here")
	}
	if _, err := ParseDevice("cuda"); err == nil || !strings.Contains(err.Error(), "CUDA is not available") {
		t.Errorf("cuda without CUDA: err = %v", err)
	}
}

func TestScopeDropsEverything(t *testing.T) {
	do(t, func() error {
		var s Scope
		for i := 0; i < 5; i++ {
			if _, err := s.KeepErr(ts.Zeros([]int64{4}, gotch.Float, gotch.CPU)); err != nil {
				return err
			}
		}
		if s.Len() != 5 {
			t.Errorf("Len = %d", s.Len())
		}
		s.Drop()
		if s.Len() != 0 {
			t.Errorf("Len after Drop = %d", s.Len())
		}
		return nil
	})
}

// LiveTensors follows gotch's registry: up by one per tensor made, down by one per
// Drop, and a second Drop of the same tensor changes nothing. The registry is
// global, and gotch's finalizers drop tensors that earlier tests left to the
// garbage collector at any moment; so the count is measured after the
// finalizers have settled, and a round that one of them crossed is tried again.
func TestLiveTensorsCountsCreatedAndDropped(t *testing.T) {
	var last []int
	for round := 0; round < 5; round++ {
		settleFinalizers()
		var deltas []int
		do(t, func() error {
			before := LiveTensors()
			var made []*ts.Tensor
			for i := 0; i < 7; i++ {
				x, err := ts.Zeros([]int64{3}, gotch.Float, gotch.CPU)
				if err != nil {
					return err
				}
				made = append(made, x)
			}
			deltas = append(deltas, LiveTensors()-before)
			for _, x := range made[:4] {
				if err := x.Drop(); err != nil {
					return err
				}
			}
			if err := made[0].Drop(); err != nil {
				return err
			}
			deltas = append(deltas, LiveTensors()-before)
			for _, x := range made[4:] {
				if err := x.Drop(); err != nil {
					return err
				}
			}
			deltas = append(deltas, LiveTensors()-before)
			return nil
		})
		if slices.Equal(deltas, []int{7, 3, 0}) {
			return
		}
		last = deltas
	}
	t.Errorf("live tensors after 7 made, 4 of them dropped (one twice), all dropped: %+d in each of 5 rounds; want [7 3 0]", last)
}

// settleFinalizers runs the garbage collector until the live-tensor count
// stops moving, so that pending finalizers do not change it mid-measurement.
func settleFinalizers() {
	prev := LiveTensors()
	for i := 0; i < 20; i++ {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
		n := LiveTensors()
		if n == prev {
			return
		}
		prev = n
	}
}

func TestHostCopies(t *testing.T) {
	do(t, func() error {
		x, err := FromFloat32([]float32{1.5, -2, 3, 4}, []int64{2, 2}, gotch.CPU)
		if err != nil {
			return err
		}
		defer x.Drop()
		f, err := Float32s(x)
		if err != nil {
			return err
		}
		i, err := Int64s(x) // converted, truncated towards zero
		if err != nil {
			return err
		}
		if fmt.Sprint(f) != "[1.5 -2 3 4]" || fmt.Sprint(i) != "[1 -2 3 4]" {
			t.Errorf("Float32s %v, Int64s %v", f, i)
		}
		if _, err := FromFloat32([]float32{1, 2, 3}, []int64{2, 2}, gotch.CPU); err == nil {
			t.Error("3 values for a 2x2 shape accepted")
		}
		return nil
	})
}

// gotch's CopyData takes an empty slice's element type for uint8, so copying an
// empty tensor (a Nonzero that found nothing) to the host must not reach it.
func TestHostCopyOfEmptyTensors(t *testing.T) {
	do(t, func() error {
		z, err := FromFloat32([]float32{0, 0}, []int64{2}, gotch.CPU)
		if err != nil {
			return err
		}
		defer z.Drop()
		nz, err := z.Nonzero(false)
		if err != nil {
			return err
		}
		defer nz.Drop()
		idx, err := Int64s(nz)
		if err != nil || len(idx) != 0 {
			t.Errorf("Int64s of an empty Nonzero: %v, %v", idx, err)
		}
		e, err := z.Narrow(0, 0, 0, false)
		if err != nil {
			return err
		}
		defer e.Drop()
		if v, err := Float32s(e); err != nil || len(v) != 0 {
			t.Errorf("Float32s of an empty tensor: %v, %v", v, err)
		}
		return nil
	})
}

// gotch v0.8.0's in-place operations replaced the tensor's C handle without
// freeing the old one, which kept the whole storage alive: 100 in-place calls on
// an 8 MiB tensor leaked 800 MiB. gotchgen frees the old handle.
func TestInPlaceOpsDoNotLeak(t *testing.T) {
	do(t, func() error {
		x, err := ts.Ones([]int64{2 << 20}, gotch.Float, gotch.CPU)
		if err != nil {
			return err
		}
		defer x.Drop()
		idx, err := FromInt64([]int64{0, 1}, []int64{2}, gotch.CPU)
		if err != nil {
			return err
		}
		defer idx.Drop()
		v, err := FromFloat32([]float32{2, 3}, []int64{2}, gotch.CPU)
		if err != nil {
			return err
		}
		defer v.Drop()
		for i := 0; i < 10; i++ { // warm up the allocator
			if err := x.Relu_(); err != nil {
				return err
			}
		}
		before := RSSBytes()
		for i := 0; i < 100; i++ {
			if err := x.Relu_(); err != nil {
				return err
			}
			if err := x.Put_(idx, v, true); err != nil {
				return err
			}
		}
		if grew := RSSBytes() - before; grew > 64<<20 {
			t.Errorf("RSS grew %d MiB over 200 in-place calls on an 8 MiB tensor", grew>>20)
		}
		got, err := Float32s(x)
		if err != nil {
			return err
		}
		if got[0] != 201 || got[1] != 301 || got[2] != 1 {
			t.Errorf("after the in-place calls: %v", got[:3])
		}
		return nil
	})
}
