package configs

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	want := []string{
		"model.arch", "model.width", "model.hidden", "model.batch_norm",
		"data.dataset", "data.dir", "data.train_limit", "data.test_limit", "data.augment",
		"train.epochs", "train.batch_size", "train.eval_batch_size", "train.optimizer", "train.lr",
		"train.momentum", "train.nesterov", "train.weight_decay", "train.schedule", "train.step_size",
		"train.gamma", "train.warmup_epochs", "train.label_smoothing", "train.keep_best",
		"runtime.seed", "runtime.threads", "runtime.device",
		"harden.clamps", "harden.profile_images", "harden.margin", "harden.weight_clamps", "harden.fat", "harden.epochs",
		"harden.lr_scale", "harden.fault_prob", "harden.faults_per_step", "harden.pool_share",
		"harden.pool_budget", "harden.pool_images",
		"harden.lambda", "harden.max_grad_norm", "harden.refresh", "harden.permanent", "harden.vf_ratio", "harden.vf_precision", "harden.vf_images", "harden.ber",
		"harden.ber_trials", "harden.ber_images", "harden.ablation",
	}
	if got := Keys(); !reflect.DeepEqual(got, want) {
		t.Errorf("Keys() =\n%v\nwant\n%v", got, want)
	}
	// YAML() lists keys in the same order.
	data, err := Default().YAML()
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		name, _, ok := strings.Cut(line, ":")
		switch {
		case !ok || strings.HasPrefix(strings.TrimSpace(name), "-"):
		case !strings.HasPrefix(name, " "):
			section = name
		default:
			order = append(order, section+"."+strings.TrimSpace(name))
		}
	}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("YAML key order =\n%v\nwant\n%v", order, want)
	}
}

// TestTags checks that the mapstructure, yaml and json names of every field agree.
func TestTags(t *testing.T) {
	var check func(reflect.Type)
	check = func(st reflect.Type) {
		for i := range st.NumField() {
			f := st.Field(i)
			ms := f.Tag.Get("mapstructure")
			y, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			j, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if ms == "" || ms != y || ms != j {
				t.Errorf("%s.%s: tags mapstructure %q, yaml %q, json %q differ", st.Name(), f.Name, ms, y, j)
			}
			if ms != strings.ToLower(ms) {
				t.Errorf("%s.%s: key %q is not lower snake_case", st.Name(), f.Name, ms)
			}
			if f.Type.Kind() == reflect.Struct {
				check(f.Type)
			}
		}
	}
	check(reflect.TypeFor[Config]())
}

func TestEnvVar(t *testing.T) {
	if got, want := EnvVar("train.batch_size"), "FAULTLINE_TRAIN_BATCH_SIZE"; got != want {
		t.Errorf("EnvVar = %q, want %q", got, want)
	}
	seen := map[string]string{}
	for _, k := range Keys() {
		e := EnvVar(k)
		if prev, dup := seen[e]; dup {
			t.Errorf("keys %q and %q share %s", prev, k, e)
		}
		seen[e] = k
	}
}

func TestChoices(t *testing.T) {
	for key := range choices {
		if !slices.Contains(Keys(), key) {
			t.Errorf("choices for unknown key %q", key)
		}
	}
	if got := Choices("train.optimizer"); !reflect.DeepEqual(got, []string{"sgd", "adam"}) {
		t.Errorf("Choices(train.optimizer) = %v", got)
	}
	if got := Choices("train.lr"); got != nil {
		t.Errorf("Choices(train.lr) = %v, want nil", got)
	}
	Choices("model.arch")[0] = "changed"
	if Choices("model.arch")[0] != ArchMLP {
		t.Error("Choices returns the internal slice")
	}
}

func TestDidYouMean(t *testing.T) {
	tests := []struct{ name, want string }{
		{"train.epoch", "train.epochs"},
		{"train.eopchs", "train.epochs"}, // transposition
		{"epochs", "train.epochs"},       // missing section
		{"model.lr", "train.lr"},         // wrong section
		{"trian", "train"},
		{"model.batchnorm", "model.batch_norm"},
		{"runtime.devices", "runtime.device"},
		{"train.learning_rate", ""},
		{"completely.unrelated", ""},
	}
	for _, tt := range tests {
		got := didYouMean(tt.name, theSchema().names)
		want := ""
		if tt.want != "" {
			want = ` (did you mean "` + tt.want + `"?)`
		}
		if got != want {
			t.Errorf("didYouMean(%q) = %q, want %q", tt.name, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "ab", 2}, {"kitten", "sitting", 3},
		{"epochs", "epoch", 1}, {"ab", "ba", 1}, {"lr", "lr", 0}, {"ca", "abc", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
