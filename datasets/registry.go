package datasets

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FashionMNISTDir is where `make setup` (apt-get install dataset-fashion-mnist)
// installs Fashion-MNIST.
const FashionMNISTDir = "/usr/share/datasets/fashion-mnist/"

var fashionMNISTClassNames = []string{
	"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
	"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

var mnistClassNames = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// registry maps each data set name to its loader.
var registry = map[string]func(name, dir string, split Split) (*Set, error){
	"fashion-mnist": loadIDX(fashionMNISTClassNames),
	"mnist":         loadIDX(mnistClassNames),
	"cifar10":       loadCIFAR,
	"synthetic":     loadSynthetic,
}

// defaultDirs holds the data sets that have a default directory.
var defaultDirs = map[string]string{"fashion-mnist": FashionMNISTDir}

// Names returns the names Load knows, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// DefaultDir returns the directory Load reads name from when given no directory,
// or "" when name has none.
func DefaultDir(name string) string {
	return defaultDirs[strings.ToLower(name)]
}

// Load reads the split of the data set called name (see Names) from dir, or from
// DefaultDir(name) when dir is empty:
//   - "fashion-mnist", "mnist": the IDX files train-images-idx3-ubyte.gz,
//     train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
//     t10k-labels-idx1-ubyte.gz, or the same names without .gz;
//   - "cifar10": data_batch_1.bin .. data_batch_5.bin and test_batch.bin, in dir or
//     in its cifar-10-batches-bin subfolder;
//   - "synthetic": Synthetic with the default config and Seed 1 (dir is ignored):
//     6000 train and 1000 test images of 1x28x28 in 10 classes.
func Load(name, dir string, split Split) (*Set, error) {
	key := strings.ToLower(name)
	load, ok := registry[key]
	if !ok {
		return nil, fmt.Errorf("datasets: unknown data set %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	if split != Train && split != Test {
		return nil, fmt.Errorf("datasets: %s: unknown split %q (want %q or %q)", key, split, Train, Test)
	}
	if key != "synthetic" {
		var err error
		if dir, err = checkDir(key, dir, defaultDirs[key]); err != nil {
			return nil, err
		}
	}
	s, err := load(key, dir, split)
	if err != nil {
		return nil, err
	}
	s.Name, s.Split = key, split
	return s, nil
}

// checkDir resolves dir (default when empty) and checks it is a directory.
func checkDir(name, dir, def string) (string, error) {
	if dir == "" {
		if def == "" {
			return "", fmt.Errorf("datasets: %s has no default directory: pass the directory holding its files", name)
		}
		dir = def
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("datasets: %s: data directory %s not found%s", name, dir, installHint(name, dir))
	case err != nil:
		return "", fmt.Errorf("datasets: %s: data directory: %w", name, err)
	case !fi.IsDir():
		return "", fmt.Errorf("datasets: %s: %s is not a directory", name, dir)
	}
	return dir, nil
}

// loadIDX returns a loader for an IDX data set with the given class names.
func loadIDX(classNames []string) func(name, dir string, split Split) (*Set, error) {
	return func(name, dir string, split Split) (*Set, error) {
		prefix := "train"
		if split == Test {
			prefix = "t10k"
		}
		images, err := findFile(name, dir, prefix+"-images-idx3-ubyte")
		if err != nil {
			return nil, err
		}
		labels, err := findFile(name, dir, prefix+"-labels-idx1-ubyte")
		if err != nil {
			return nil, err
		}
		s, err := ReadIDX(images, labels)
		if err != nil {
			return nil, err
		}
		s.ClassNames = slices.Clone(classNames)
		return s, nil
	}
}

// findFile returns dir/base.gz or dir/base, whichever exists first.
func findFile(name, dir, base string) (string, error) {
	for _, f := range []string{base + ".gz", base} {
		p := filepath.Join(dir, f)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("datasets: %s: missing file: neither %s.gz nor %s in %s%s", name, base, base, dir, installHint(name, dir))
}

// installHint tells how to install a data set that is missing from its default place.
func installHint(name, dir string) string {
	if def := defaultDirs[name]; name == "fashion-mnist" && filepath.Clean(dir) == filepath.Clean(def) {
		return "; install it with `make setup` (or `apt-get install dataset-fashion-mnist`)"
	}
	return ""
}

func loadCIFAR(name, dir string, split Split) (*Set, error) {
	dir = cifarDir(dir)
	var paths []string
	for _, f := range cifarFiles[split] {
		paths = append(paths, filepath.Join(dir, f))
	}
	return ReadCIFAR(paths...)
}

func loadSynthetic(_, _ string, split Split) (*Set, error) {
	cfg := SyntheticConfig{Seed: 1, Split: split}
	if split == Test {
		cfg.N = 1000
	}
	return Synthetic(cfg), nil
}
