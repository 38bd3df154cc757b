package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/faultline/faultline/configs"
	"github.com/spf13/cobra"
)

func (a *app) configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show and check configuration"}
	var cf configFlags
	var showJSON, keysJSON, presetsJSON bool
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (preset < --config file < FAULTLINE_* < flags) as YAML",
		Example: `  faultline config show --preset vgg11-fashion --epochs 3
  FAULTLINE_TRAIN_LR=0.01 faultline config show`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(cmd.Flags())
			if err != nil {
				return err
			}
			if showJSON {
				return json.NewEncoder(a.stdout).Encode(cfg)
			}
			b, err := cfg.YAML()
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(b)
			return err
		},
	}
	addConfigFlags(show.Flags(), &cf)
	show.Flags().BoolVar(&showJSON, "json", false, "print the configuration as JSON instead of YAML")
	keys := &cobra.Command{
		Use:   "keys",
		Short: "List every configuration key with its environment variable",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if keysJSON {
				type key struct {
					Key     string   `json:"key"`
					Env     string   `json:"env"`
					Choices []string `json:"choices,omitempty"`
				}
				var all []key
				for _, k := range configs.Keys() {
					all = append(all, key{Key: k, Env: configs.EnvVar(k), Choices: configs.Choices(k)})
				}
				return json.NewEncoder(a.stdout).Encode(all)
			}
			for _, k := range configs.Keys() {
				line := fmt.Sprintf("%-24s %s", k, configs.EnvVar(k))
				if c := configs.Choices(k); c != nil {
					line += "  (" + strings.Join(c, "|") + ")"
				}
				fmt.Fprintln(a.stdout, line)
			}
			return nil
		},
	}
	presets := &cobra.Command{
		Use:   "presets",
		Short: "List the embedded presets",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if presetsJSON {
				return json.NewEncoder(a.stdout).Encode(configs.Presets())
			}
			for _, p := range configs.Presets() {
				fmt.Fprintln(a.stdout, p)
			}
			return nil
		},
	}
	keys.Flags().BoolVar(&keysJSON, "json", false, "print the keys as a JSON array of {key, env, choices}")
	presets.Flags().BoolVar(&presetsJSON, "json", false, "print the preset names as a JSON array")
	cmd.AddCommand(show, keys, presets)
	return cmd
}
