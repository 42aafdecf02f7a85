// Command gacha is a game process doing a 10-pull on a banner of weighted
// prizes, kept safe by drawstate's MultiDraw: examples/gacha.py, in Go.
//
// Each pull is drawn by weight (gold 0.1, silver 0.3, bronze 0.6), recorded
// through MultiDraw, and only then granted. Crash it halfway (-crash-after N:
// the process sends itself SIGKILL right after draw N is saved), then run it
// again with -resume to finish the same 10-pull from draw N+1, or with
// -rollback to cancel it: the player keeps what was granted and gets the price
// of the draws never made back.
//
//	drawstate serve &                       # the sidecar (or DRAWSTATE_SOCKET=...)
//	go run ./examples/gacha -seed 7 -crash-after 4
//	go run ./examples/gacha -seed 7 -resume   # draws 5..10, then completes
//	go run ./examples/gacha -seed 7 -crash-after 4
//	go run ./examples/gacha -rollback         # keeps draws 1..4, refunds 6 of 10
//
// -seed makes every draw reproducible (draw i uses its own RNG seeded from
// "<seed>:<i>"), so a crashed-and-resumed 10-pull grants exactly what an
// uninterrupted one would. Without it the draws are random.
//
// A draw is granted only once it is recorded. When a save cannot be confirmed
// either way (ErrOutcomeUnknown: its resends got no definite answer within
// -resend-deadline), nothing is granted for it; -resume settles it. A rollback
// refunds here only when it is final; otherwise the refund worker
// (examples/refund_worker.py) pays it from the outcome stream.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/drawstate/drawstate/clients/go/drawstate"
)

// Exit codes, as examples/gacha.py uses them.
const (
	exitOK      = 0
	exitNothing = 1
	exitError   = 2
	exitLost    = 3
)

// banner is the prizes and their weights.
var banner = []drawstate.Prize{
	{ID: "gold", Name: "Gold Dragon", Probability: 0.1, Value: 500},
	{ID: "silver", Name: "Silver Wolf", Probability: 0.3, Value: 100},
	{ID: "bronze", Name: "Bronze Cat", Probability: 0.6, Value: 20},
}

// errPrizeService is the (pretend) inventory service failing: the draw fails.
var errPrizeService = errors.New("inventory service timed out")

type config struct {
	resume, rollback     bool
	player, bannerName   string
	pulls, price         int
	seed                 string // "" draws at random
	crashAfter, failDraw int
	reason, socket       string
	ttl                  time.Duration
	timeout              time.Duration
	resendDeadline       time.Duration
	out                  io.Writer
}

func drawPrize(seed string, index int) drawstate.Prize {
	source := rand.NewSource(time.Now().UnixNano())
	if seed != "" {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s:%d", seed, index)
		source = rand.NewSource(int64(h.Sum64()))
	}
	roll := rand.New(source).Float64()
	for _, prize := range banner {
		if roll < prize.Probability {
			return prize
		}
		roll -= prize.Probability
	}
	return banner[len(banner)-1]
}

func summary(prizes []drawstate.Prize) string {
	counts, total := map[string]int{}, int64(0)
	for _, prize := range prizes {
		counts[prize.ID]++
		total += prize.Value
	}
	var parts []string
	for _, prize := range banner {
		if counts[prize.ID] > 0 {
			parts = append(parts, fmt.Sprintf("%s x%d", prize.Name, counts[prize.ID]))
		}
	}
	if len(parts) == 0 {
		parts = []string{"nothing"}
	}
	return fmt.Sprintf("%s (value %d)", strings.Join(parts, ", "), total)
}

// drawTheRest draws, records, then grants, until every draw of the operation is made.
func drawTheRest(ctx context.Context, draw *drawstate.MultiDraw, cfg config) error {
	for !draw.Finished() {
		index := draw.NextDrawIndex()
		if index == cfg.failDraw {
			if _, err := draw.RecordFailure(ctx, errPrizeService); err != nil {
				return err // not recorded: the operation stays for -resume
			}
			fmt.Fprintf(cfg.out, "  draw %2d/%d: failed (%v)\n", index, draw.TotalCount(), errPrizeService)
		} else {
			prize := drawPrize(cfg.seed, index)
			if _, err := draw.RecordPrize(ctx, prize); err != nil {
				return err
			}
			// Saved: now it is safe to grant.
			fmt.Fprintf(cfg.out, "  draw %2d/%d: %s (%s, value %d)\n", index, draw.TotalCount(), prize.Name, prize.ID, prize.Value)
		}
		if index == cfg.crashAfter {
			fmt.Fprintf(cfg.out, "  crashing: SIGKILL after draw %d\n", index)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute) // never reached: the signal ends the process
		}
	}
	return nil
}

func printCompleted(cfg config, final drawstate.DrawState) {
	fmt.Fprintf(cfg.out, "completed: granted %d of %d draws: %s\n", final.CompletedCount, final.TotalCount, summary(final.PrizeResults))
}

func newPull(ctx context.Context, client *drawstate.Client, cfg config) error {
	metadata := map[string]string{"user_id": cfg.player, "banner": cfg.bannerName, "price_paid": strconv.Itoa(cfg.price)}
	draw, err := drawstate.StartMultiDraw(ctx, client, "player:"+cfg.player, cfg.pulls, drawstate.StartOptions{
		Metadata: metadata, SessionOptions: cfg.session(),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(cfg.out, "player %s: %d-pull on banner %q for %d gems (operation %s)\n",
		cfg.player, cfg.pulls, cfg.bannerName, cfg.price, draw.OperationID())
	// On an error the operation stays in Redis for -resume or -rollback (Python's on_error "keep").
	if err := drawTheRest(ctx, draw, cfg); err != nil {
		return err
	}
	final, err := draw.Complete(ctx, false)
	if err != nil {
		return err
	}
	printCompleted(cfg, final)
	return nil
}

func resume(ctx context.Context, client *drawstate.Client, cfg config) (int, error) {
	draw, err := drawstate.ResumeMultiDraw(ctx, client, "player:"+cfg.player, "", drawstate.ResumeOptions{
		SessionOptions: cfg.session(),
	})
	if err != nil {
		return exitError, err
	}
	if draw == nil {
		fmt.Fprintf(cfg.out, "player %s: nothing to resume\n", cfg.player)
		return exitNothing, nil
	}
	fmt.Fprintf(cfg.out, "player %s: resuming operation %s at draw %d/%d\n",
		cfg.player, draw.OperationID(), draw.NextDrawIndex(), draw.TotalCount())
	fmt.Fprintf(cfg.out, "  kept from before the crash: %s\n", summary(draw.State().PrizeResults))
	if err := drawTheRest(ctx, draw, cfg); err != nil {
		return exitError, err
	}
	final, err := draw.Complete(ctx, false)
	if err != nil {
		return exitError, err
	}
	printCompleted(cfg, final)
	return exitOK, nil
}

func rollback(ctx context.Context, client *drawstate.Client, cfg config) (int, error) {
	draw, err := drawstate.ResumeMultiDraw(ctx, client, "player:"+cfg.player, "", drawstate.ResumeOptions{
		SessionOptions: drawstate.SessionOptions{ResendDeadline: cfg.resendDeadline},
	})
	if err != nil {
		return exitError, err
	}
	if draw == nil {
		fmt.Fprintf(cfg.out, "player %s: nothing to roll back\n", cfg.player)
		return exitNothing, nil
	}
	refund, err := draw.Rollback(ctx, cfg.reason)
	if err != nil {
		return exitError, err
	}
	price, _ := strconv.Atoi(refund.State.Metadata["price_paid"])
	total := refund.State.TotalCount
	gems := price * refund.UngrantedCount() / total
	fmt.Fprintf(cfg.out, "player %s: rolled back operation %s (cleanup %s)\n", cfg.player, draw.OperationID(), refund.Cleanup)
	fmt.Fprintf(cfg.out, "  granted before the crash: %d of %d draws: %s\n", refund.GrantedCount(), total, summary(refund.State.PrizeResults))
	if refund.Final {
		fmt.Fprintf(cfg.out, "  refunded: %d of %d draws = %d of %d gems\n", refund.UngrantedCount(), total, gems, price)
	} else {
		// Redis was unreachable: the refund worker pays it from the outcome stream once applied.
		fmt.Fprintf(cfg.out, "  refund pending: the outcome stream carries it (about %d of %d gems)\n", gems, price)
	}
	return exitOK, nil
}

// session is the MultiDraw options of a pull: its TTL and resend deadline.
func (cfg config) session() drawstate.SessionOptions {
	return drawstate.SessionOptions{TTL: cfg.ttl, ResendDeadline: cfg.resendDeadline}
}

func parse(args []string, out io.Writer) (config, error) {
	cfg := config{out: out}
	flags := flag.NewFlagSet("gacha", flag.ContinueOnError)
	flags.SetOutput(out)
	flags.BoolVar(&cfg.resume, "resume", false, "finish the player's interrupted pull")
	flags.BoolVar(&cfg.rollback, "rollback", false, "cancel it and refund the draws not made")
	flags.StringVar(&cfg.player, "player", "1001", "user id; the lock key is player:<id>")
	flags.StringVar(&cfg.bannerName, "banner", "summer", "banner name")
	flags.IntVar(&cfg.pulls, "pulls", 10, "draws in the multi-draw")
	flags.IntVar(&cfg.price, "price", 1600, "gems paid for the whole multi-draw")
	flags.StringVar(&cfg.seed, "seed", "", "make every draw reproducible")
	flags.IntVar(&cfg.crashAfter, "crash-after", 0, "SIGKILL this process after draw N")
	flags.IntVar(&cfg.failDraw, "fail-draw", 0, "make draw N fail (a failed draw)")
	flags.StringVar(&cfg.reason, "reason", "player cancelled after a crash", "rollback reason")
	flags.DurationVar(&cfg.ttl, "ttl", 0, "how long the saved state outlives its last save")
	flags.StringVar(&cfg.socket, "socket", "", "daemon socket [default: $DRAWSTATE_SOCKET or the default path]")
	flags.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "time per daemon call")
	flags.DurationVar(&cfg.resendDeadline, "resend-deadline", drawstate.DefaultResendDeadline,
		"how long a save or rollback is resent before it is given up as in doubt")
	if err := flags.Parse(args); err != nil {
		return cfg, err
	}
	if cfg.resume && cfg.rollback {
		return cfg, errors.New("-resume and -rollback exclude each other")
	}
	return cfg, nil
}

func run(args []string, out io.Writer) int {
	cfg, err := parse(args, out)
	if err != nil {
		fmt.Fprintln(out, err)
		return exitError
	}
	client := drawstate.NewClient(drawstate.Options{SocketPath: cfg.socket, Timeout: cfg.timeout})
	defer client.Close()
	ctx := context.Background()
	code := exitOK
	switch {
	case cfg.resume:
		code, err = resume(ctx, client, cfg)
	case cfg.rollback:
		code, err = rollback(ctx, client, cfg)
	default:
		err = newPull(ctx, client, cfg)
	}
	switch {
	case err == nil:
		return code
	case errors.Is(err, drawstate.ErrOutcomeUnknown) && cfg.rollback:
		fmt.Fprintf(out, "player %s: the rollback is in doubt (%s); nothing refunded here (docs/recovery.md §5)\n",
			cfg.player, drawstate.CodeOutcomeUnknown)
		return exitError
	case errors.Is(err, drawstate.ErrOutcomeUnknown):
		fmt.Fprintf(out, "player %s: a save is in doubt (%s); nothing granted for it: run -resume\n",
			cfg.player, drawstate.CodeOutcomeUnknown)
		return exitError
	case errors.Is(err, drawstate.ErrVersionConflict) || errors.Is(err, drawstate.ErrOperationClosed):
		var e *drawstate.Error
		errors.As(err, &e)
		fmt.Fprintf(out, "player %s: another process has this operation (%s); stopping\n", cfg.player, e.Code)
		return exitLost
	default:
		fmt.Fprintf(out, "player %s: drawstate error %v; the operation is kept for -resume\n", cfg.player, err)
		return exitError
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}
