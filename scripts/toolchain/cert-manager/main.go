// cert-manager-controller: cert-manager's own ACME issuance controllers, run
// against one kubeconfig, for the loopback certificate tests (loopback/acme.py).
//
// Upstream's binary lives in the module github.com/cert-manager/cert-manager/cmd/controller,
// which the Go module proxy does not serve. The controllers themselves live in the
// main module, which is served: each package registers its constructor with
// pkg/controller (Register/Known) from an init function, so importing a package
// is what makes its controller available here. This program only chooses the
// options and the set of controllers; the reconciling code is cert-manager's.
//
// Differences from upstream's binary, all deliberate for a single-process test:
// no leader election, no metrics or health servers, no webhook, and only the
// controllers ACME issuance through DNS-01 needs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"

	// Each import registers one controller (see the names in defaultControllers).
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmechallenges"
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmeorders"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/acme"
	// Without the approver nothing approves a CertificateRequest, and the ACME
	// issuer controller waits for approval forever.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// Registers the ACME issuer type with the issuer factory the (cluster)issuers
	// controllers use to register the ACME account.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme"
)

// defaultControllers is what ACME issuance of a Certificate through DNS-01 needs,
// in cert-manager's own controller names.
var defaultControllers = []string{
	"certificates-trigger",
	"certificates-key-manager",
	"certificates-request-manager",
	"certificates-issuing",
	"certificates-readiness",
	"certificates-revision-manager",
	"certificaterequests-approver",
	"certificaterequests-issuer-acme",
	"orders",
	"challenges",
	"issuers",
	"clusterissuers",
}

// listFlag collects a flag given several times, or once with commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(value string) error {
	for _, item := range strings.Split(value, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}

type options struct {
	kubeconfig               string
	clusterResourceNamespace string
	nameservers              listFlag
	controllers              listFlag
	workers                  int
	checkRetryPeriod         time.Duration
	maxConcurrentChallenges  int
	minBackoff               time.Duration
	maxBackoff               time.Duration
	ownerRef                 bool
	version                  bool
}

func parseFlags() options {
	var o options
	fs := flag.CommandLine
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to reconcile (required)")
	fs.StringVar(&o.clusterResourceNamespace, "cluster-resource-namespace", "cert-manager",
		"namespace holding the Secrets ClusterIssuers refer to (ACME account key, TSIG key)")
	fs.Var(&o.nameservers, "dns01-nameserver",
		"host:port used for the DNS-01 self-check, repeatable (upstream: --dns01-recursive-nameservers "+
			"with --dns01-recursive-nameservers-only)")
	fs.Var(&o.controllers, "controllers",
		"comma-separated controller names (default: "+strings.Join(defaultControllers, ",")+")")
	fs.IntVar(&o.workers, "workers", 2, "workers per controller")
	fs.DurationVar(&o.checkRetryPeriod, "dns01-check-retry-period", 2*time.Second,
		"wait between DNS-01 self-checks (upstream default 10s)")
	fs.IntVar(&o.maxConcurrentChallenges, "max-concurrent-challenges", 60,
		"challenges processed at once (0 would never schedule one)")
	fs.DurationVar(&o.minBackoff, "certificate-request-minimum-backoff-duration", time.Hour,
		"first wait before retrying a failed issuance (upstream default 1h)")
	fs.DurationVar(&o.maxBackoff, "certificate-request-maximum-backoff-duration", 32*time.Hour,
		"longest wait before retrying a failed issuance (upstream default 32h)")
	fs.BoolVar(&o.ownerRef, "enable-certificate-owner-ref", false,
		"make each Certificate the owner of its Secret, so the garbage collector deletes the "+
			"Secret with it (upstream's flag of the same name)")
	fs.BoolVar(&o.version, "version", false, "print the cert-manager version and exit")
	// klog's own flags (-v, -logtostderr, ...) on the same command line.
	klog.InitFlags(fs)
	flag.Parse()
	if len(o.controllers) == 0 {
		o.controllers = slices.Clone(defaultControllers)
	}
	return o
}

func (o options) validate() error {
	var problems []string
	if o.kubeconfig == "" {
		problems = append(problems, "--kubeconfig is required")
	}
	if len(o.nameservers) == 0 {
		// Without it the self-check would ask the authoritative servers found
		// through the public DNS tree, which a loopback test zone has none of.
		problems = append(problems, "--dns01-nameserver is required")
	}
	if o.clusterResourceNamespace == "" {
		problems = append(problems, "--cluster-resource-namespace must not be empty")
	}
	if o.maxConcurrentChallenges < 1 {
		problems = append(problems, "--max-concurrent-challenges must be at least 1")
	}
	if o.workers < 1 {
		problems = append(problems, "--workers must be at least 1")
	}
	known := controller.Known()
	for _, name := range o.controllers {
		if _, ok := known[name]; !ok {
			problems = append(problems, fmt.Sprintf("unknown controller %q (known: %s)",
				name, strings.Join(knownNames(), ", ")))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func knownNames() []string {
	names := make([]string, 0, len(controller.Known()))
	for name := range controller.Known() {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func contextOptions(o options) controller.ContextOptions {
	return controller.ContextOptions{
		Kubeconfig: o.kubeconfig,
		// Only used when the API server lacks API Priority and Fairness; these
		// are upstream's defaults.
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		// All namespaces: the Certificates live in the gateway namespace and the
		// ClusterIssuer's Secrets in the cluster resource namespace.
		Namespace: "",
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace: o.clusterResourceNamespace,
		},
		ACMEOptions: controller.ACMEOptions{
			// HTTP-01 is not used here (no kubelet runs solver pods), but the
			// challenges controller builds the solver anyway: give it upstream's
			// defaults rather than zero quantities.
			HTTP01SolverImage:                 "quay.io/jetstack/cert-manager-acmesolver:v" + util.AppVersion,
			HTTP01SolverResourceRequestCPU:    resource.MustParse("10m"),
			HTTP01SolverResourceRequestMemory: resource.MustParse("64Mi"),
			HTTP01SolverResourceLimitsCPU:     resource.MustParse("100m"),
			HTTP01SolverResourceLimitsMemory:  resource.MustParse("64Mi"),
			ACMEHTTP01SolverRunAsNonRoot:      true,
			// false = ask only the nameservers below (upstream's
			// --dns01-recursive-nameservers-only), never walk to "authoritative"
			// servers found through the public tree.
			DNS01CheckAuthoritative: false,
			DNS01Nameservers:        o.nameservers,
			DNS01CheckRetryPeriod:   o.checkRetryPeriod,
		},
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef:                           o.ownerRef,
			CertificateRequestMinimumBackoffDuration: o.minBackoff,
			CertificateRequestMaximumBackoffDuration: o.maxBackoff,
		},
		SchedulerOptions: controller.SchedulerOptions{
			MaxConcurrentChallenges: o.maxConcurrentChallenges,
		},
	}
}

func run(ctx context.Context, o options) error {
	log := logf.FromContext(ctx)
	factory, err := controller.NewContextFactory(ctx, contextOptions(o))
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}
	// Every Context the factory builds shares these informer factories; a
	// controller adds its informers to them while it is constructed, so they
	// are started only after all controllers exist (as upstream does).
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building the base controller context: %w", err)
	}

	known := controller.Known()
	var wg sync.WaitGroup
	failures := make(chan error, len(o.controllers))
	for _, name := range o.controllers {
		iface, err := known[name](factory)
		if err != nil {
			return fmt.Errorf("constructing controller %s: %w", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Info("starting controller", "controller", name)
			if err := iface.Run(o.workers, ctx); err != nil {
				failures <- fmt.Errorf("controller %s: %w", name, err)
			}
		}()
	}

	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	log.Info("controllers started", "controllers", strings.Join(o.controllers, ","),
		"dns01Nameservers", strings.Join(o.nameservers, ","),
		"clusterResourceNamespace", o.clusterResourceNamespace)

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case err := <-failures:
		return err
	case <-done:
		return nil
	}
}

func main() {
	o := parseFlags()
	if o.version {
		fmt.Printf("cert-manager-controller %s\n", util.AppVersion)
		return
	}
	logf.InitLogs()
	defer logf.FlushLogs()
	if err := o.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "cert-manager-controller: %v\n", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")

	if err := run(ctx, o); err != nil {
		logf.Log.Error(err, "cert-manager-controller stopped")
		logf.FlushLogs()
		os.Exit(1)
	}
}
