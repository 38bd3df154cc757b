package train

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/configs"
)

// LR returns the learning rate for a step (0-based) of a run with stepsPerEpoch
// steps per epoch, following the schedule in c. Warm-up is linear from lr/10 over
// warmup_epochs.
func LR(c configs.TrainConfig, step, stepsPerEpoch int) float64 {
	total := c.Epochs * stepsPerEpoch
	warm := c.WarmupEpochs * stepsPerEpoch
	if step < warm {
		return c.LR * (0.1 + 0.9*float64(step)/float64(warm))
	}
	switch c.Schedule {
	case configs.ScheduleStep:
		epoch := step / stepsPerEpoch
		return c.LR * math.Pow(c.Gamma, float64(epoch/c.StepSize))
	case configs.ScheduleCosine:
		t := float64(step-warm) / float64(max(total-warm, 1))
		return c.LR * 0.5 * (1 + math.Cos(math.Pi*t))
	case configs.ScheduleOneCycle:
		// Linear rise from lr/25 to lr over the first 30% of the steps, then a
		// cosine decay to lr/1e4 (as PyTorch's OneCycleLR with default settings).
		up := int(0.3 * float64(total))
		if step < up {
			return c.LR/25 + (c.LR-c.LR/25)*float64(step)/float64(up)
		}
		t := float64(step-up) / float64(max(total-up, 1))
		lo := c.LR / 1e4
		return lo + (c.LR-lo)*0.5*(1+math.Cos(math.Pi*t))
	}
	return c.LR
}

// checkSchedule rejects settings the schedule cannot use.
func checkSchedule(c configs.TrainConfig) error {
	if c.Schedule == configs.ScheduleStep && c.StepSize < 1 {
		return fmt.Errorf("train.step_size: must be >= 1 for the step schedule, got %d", c.StepSize)
	}
	return nil
}
