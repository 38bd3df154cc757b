package datasets

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// loadFashionMNIST loads the installed Fashion-MNIST, skipping the test in short mode
// or when the files are absent.
func loadFashionMNIST(t *testing.T, split Split) *Set {
	t.Helper()
	if testing.Short() {
		t.Skip("reads the real Fashion-MNIST (slow)")
	}
	if _, err := os.Stat(FashionMNISTDir); err != nil {
		t.Skipf("Fashion-MNIST not installed: %v", err)
	}
	s, err := Load("fashion-mnist", "", split)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadFashionMNIST(t *testing.T) {
	for split, n := range map[Split]int{Train: 60000, Test: 10000} {
		s := loadFashionMNIST(t, split)
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		if s.N != n || s.C != 1 || s.H != 28 || s.W != 28 || s.Classes != 10 || s.Name != "fashion-mnist" || s.Split != split {
			t.Errorf("%s: got %s/%s %dx%dx%dx%d, %d classes", split, s.Name, s.Split, s.N, s.C, s.H, s.W, s.Classes)
		}
		counts := make([]int, s.Classes)
		for _, l := range s.Labels {
			counts[l]++
		}
		for k, c := range counts {
			if c != n/10 {
				t.Errorf("%s: class %d (%s) has %d images, want %d", split, k, s.ClassNames[k], c, n/10)
			}
		}
		if s.ClassNames[9] != "Ankle boot" {
			t.Errorf("class 9 is %q", s.ClassNames[9])
		}
	}
}

func TestLoadIDXDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "train-images-idx3-ubyte.gz", gz(idxImages(4, 3, 3)))
	writeFile(t, dir, "train-labels-idx1-ubyte.gz", gz(idxLabels(1, 2, 3, 4)))
	writeFile(t, dir, "t10k-images-idx3-ubyte", idxImages(2, 3, 3)) // raw, no .gz
	writeFile(t, dir, "t10k-labels-idx1-ubyte", idxLabels(5, 6))
	for _, tc := range []struct {
		name  string
		split Split
		n     int
	}{{"mnist", Train, 4}, {"MNIST", Test, 2}, {"fashion-mnist", Test, 2}} {
		s, err := Load(tc.name, dir, tc.split)
		if err != nil {
			t.Fatal(err)
		}
		if s.N != tc.n || s.H != 3 || s.Split != tc.split || len(s.ClassNames) != 10 {
			t.Errorf("%s/%s: %+v", tc.name, tc.split, s)
		}
	}
	os.Remove(filepath.Join(dir, "t10k-labels-idx1-ubyte"))
	_, err := Load("mnist", dir, Test)
	wantErr(t, err, "missing file", "t10k-labels-idx1-ubyte.gz", dir)
}

func TestLoadCIFAR(t *testing.T) {
	for _, sub := range []string{"", "cifar-10-batches-bin"} {
		dir := t.TempDir()
		for i := 1; i <= 5; i++ {
			writeFile(t, dir, filepath.Join(sub, "data_batch_"+string(rune('0'+i))+".bin"), cifarRecords(byte(i), 0))
		}
		writeFile(t, dir, filepath.Join(sub, "test_batch.bin"), cifarRecords(7))
		train, err := Load("cifar10", dir, Train)
		if err != nil {
			t.Fatal(err)
		}
		if train.N != 10 || !slices.Equal(train.Labels, []uint8{1, 0, 2, 0, 3, 0, 4, 0, 5, 0}) || train.Name != "cifar10" {
			t.Errorf("sub %q train: N=%d labels %v", sub, train.N, train.Labels)
		}
		test, err := Load("cifar10", dir, Test)
		if err != nil || test.N != 1 || test.Labels[0] != 7 {
			t.Errorf("sub %q test: %v", sub, err)
		}
		os.Remove(filepath.Join(dir, sub, "data_batch_3.bin"))
		_, err = Load("cifar10", dir, Train)
		wantErr(t, err, "data_batch_3.bin", "missing file")
	}
}

func TestLoadSynthetic(t *testing.T) {
	train, err := Load("synthetic", "", Train)
	if err != nil {
		t.Fatal(err)
	}
	test, err := Load("synthetic", "ignored", Test)
	if err != nil {
		t.Fatal(err)
	}
	if train.N != syntheticDefaults.N || test.N != 1000 || train.Split != Train || test.Split != Test {
		t.Errorf("train %d/%s, test %d/%s", train.N, train.Split, test.N, test.Split)
	}
}

func TestLoadErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nowhere")
	for _, tc := range []struct {
		name, dir string
		split     Split
		want      []string
	}{
		{"imagenet", "", Train, []string{`unknown data set "imagenet"`, "cifar10, fashion-mnist, mnist, synthetic"}},
		{"mnist", "", Train, []string{"mnist has no default directory", "pass the directory"}},
		{"cifar10", "", Test, []string{"cifar10 has no default directory"}},
		{"mnist", missing, Train, []string{"mnist", missing, "not found"}},
		{"mnist", missing, "val", []string{`unknown split "val"`}},
	} {
		_, err := Load(tc.name, tc.dir, tc.split)
		wantErr(t, err, tc.want...)
	}
}

func TestInstallHint(t *testing.T) {
	// Point the default directory somewhere else, as on a machine without the package.
	saved := defaultDirs["fashion-mnist"]
	t.Cleanup(func() { defaultDirs["fashion-mnist"] = saved })
	hint := "install it with `make setup` (or `apt-get install dataset-fashion-mnist`)"

	dir := filepath.Join(t.TempDir(), "fashion-mnist")
	defaultDirs["fashion-mnist"] = dir
	_, err := Load("fashion-mnist", "", Train)
	wantErr(t, err, dir, "not found", hint)

	// The directory exists but holds no files.
	os.Mkdir(dir, 0o755)
	_, err = Load("fashion-mnist", "", Test)
	wantErr(t, err, "t10k-images-idx3-ubyte.gz", hint)

	// A directory the user chose gets no install hint.
	_, err = Load("fashion-mnist", t.TempDir(), Test)
	if err == nil || strings.Contains(err.Error(), "make setup") {
		t.Errorf("user directory: %v", err)
	}
}

func TestNamesAndDefaultDir(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"cifar10", "fashion-mnist", "mnist", "synthetic"}) {
		t.Errorf("Names() = %v", got)
	}
	if DefaultDir("fashion-mnist") != FashionMNISTDir || DefaultDir("mnist") != "" || DefaultDir("nope") != "" {
		t.Error("DefaultDir")
	}
}
