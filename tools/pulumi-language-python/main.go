// A STAND-IN for Pulumi's Python language host (pulumi-language-python), for the engine
// tests only (tests/engine/, docs/testing.md). The real host's module,
// github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3, is not served by the Go
// module proxy here, so this program re-implements the part of it that `pulumi preview`,
// `up`, `refresh` and `destroy` use, on the same SDK packages the real host is built on
// (sdk/v3's python/toolchain and rpcutil) at the version requirements.lock pins for the
// Python SDK. Behaviour follows upstream sdk/python/cmd/pulumi-language-python/main.go
// (read at pulumi/pulumi 1b59498, Aug 2026, the newest commit reachable here; the v3.272.0
// tag is not); each function names the upstream function it follows. Not implemented:
// the debugger, typecheckers, Pack, RunPlugin, codegen, About and the project templates.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	// The SDK's exec script, installed beside this binary (upstream const pythonDefaultExec).
	pythonDefaultExec = "pulumi-language-python-exec"
	// The exec script exits 32 after printing a message meant for the user: the engine
	// then stops without adding an error of its own (upstream
	// pythonProcessExitedAfterShowingUserActionableMessage, handled in Run).
	exitAfterUserActionableMessage = 32
)

// Python packages named pulumi-* that have no resource plugin (upstream packagesWithoutPlugins).
var packagesWithoutPlugins = map[string]bool{"pulumi-policy": true, "pulumi-esc-sdk": true}

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	exec          string
	engineAddress string
	tracing       string
	cancelCtx     context.Context // cancelled by the Cancel RPC
	cancel        context.CancelFunc
}

// main follows upstream main: -version, -tracing, -use-executor, the engine address as the
// first argument, a health check on the engine (so the host exits with it), and the port
// printed on stdout for the engine to connect to.
func main() {
	showVersion := flag.Bool("version", false, "Print the current plugin version and exit")
	tracing := flag.String("tracing", "", "Emit tracing to a Zipkin-compatible tracing endpoint")
	executor := flag.String("use-executor", "", "Use the given program as the executor")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return
	}

	execPath := *executor
	if execPath == "" {
		self, err := os.Executable()
		if err != nil {
			fail(fmt.Errorf("could not determine current executable: %w", err))
		}
		execPath = filepath.Join(filepath.Dir(self), pythonDefaultExec)
		if _, err := os.Stat(execPath); err != nil {
			fail(fmt.Errorf("missing executor %s: %w", execPath, err))
		}
	}

	cancelCtx, cancel := context.WithCancel(context.Background())
	h := &host{exec: execPath, tracing: *tracing, cancelCtx: cancelCtx, cancel: cancel}
	if flag.NArg() > 0 {
		h.engineAddress = flag.Arg(0)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	stopServing := make(chan bool)
	go func() {
		<-ctx.Done()
		stop()
		close(stopServing)
	}()
	if h.engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, h.engineAddress, 5*time.Minute, stop); err != nil {
			fail(fmt.Errorf("could not start health check host RPC server: %w", err))
		}
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: stopServing,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		fail(fmt.Errorf("could not start language host RPC server: %w", err))
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fail(fmt.Errorf("language host RPC stopped serving: %w", err))
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "error: %v\n", err)
	os.Exit(1)
}

// Handshake records the engine's address (upstream Handshake; the health check is
// started in main when the engine passes its address on the command line).
func (h *host) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.engineAddress = req.EngineAddress
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

// GetPluginInfo reports the SDK version the host was built with (upstream GetPluginInfo).
func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

// GetRequiredPlugins is unimplemented upstream too: the engine asks GetRequiredPackages.
func (h *host) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return nil, status.Errorf(codes.Unimplemented, "method GetRequiredPlugins not implemented")
}

// parseOptions reads Pulumi.yaml's runtime options (upstream parseOptions): virtualenv
// (relative to the project root) and toolchain; a typechecker is refused, not ignored.
func parseOptions(info *pulumirpc.ProgramInfo) (toolchain.PythonOptions, error) {
	opts := toolchain.PythonOptions{Root: info.RootDirectory, ProgramDir: info.ProgramDirectory}
	options := info.Options.AsMap()
	if v, ok := options["virtualenv"]; ok {
		venv, isString := v.(string)
		if !isString {
			return opts, errors.New("virtualenv option must be a string")
		}
		opts.Virtualenv = venv
	}
	if v, ok := options["toolchain"]; ok {
		switch v {
		case "pip":
			opts.Toolchain = toolchain.Pip
		case "poetry":
			opts.Toolchain = toolchain.Poetry
		case "uv":
			opts.Toolchain = toolchain.Uv
		default:
			return opts, fmt.Errorf("unsupported toolchain option: %v", v)
		}
	}
	if _, ok := options["typechecker"]; ok {
		return opts, errors.New("the typechecker option is not supported by the test stand-in host")
	}
	return opts, nil
}

// GetRequiredPackages lists the Pulumi packages installed in the program's virtualenv and
// the resource plugin each needs (upstream GetRequiredPackages, listPulumiPackageInfos and
// packageDependencyFromPluginJSON): every package with a pulumi-plugin.json, or named
// pulumi-*, gives a resource plugin named by the JSON (default: the package name without
// "pulumi-") at the JSON's version (default: the package's). The engine uses this set for
// the default providers' versions. The virtualenv must exist (upstream creates it).
func (h *host) GetRequiredPackages(
	ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	opts, err := parseOptions(req.Info)
	if err != nil {
		return nil, err
	}
	tc, err := toolchain.ResolveToolchain(opts)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return nil, err
	}
	installed, err := tc.ListPackages(ctx, true /* transitive */)
	if err != nil {
		return nil, err
	}
	pluginJSONs, err := pluginJSONPaths(ctx, tc, installed)
	if err != nil {
		return nil, err
	}
	packages := []*pulumirpc.PackageDependency{}
	for _, pkg := range installed {
		if packagesWithoutPlugins[pkg.Name] {
			continue
		}
		var meta *plugin.PulumiPluginJSON
		if path := pluginJSONs[pkg.Name]; path != "" {
			if meta, err = plugin.LoadPulumiPluginJSON(path); err != nil {
				return nil, fmt.Errorf("failed to parse pulumi-plugin.json for %s: %w", pkg.Name, err)
			}
		}
		if meta == nil && !strings.HasPrefix(pkg.Name, "pulumi-") {
			continue // not a Pulumi package
		}
		if dep := packageDependency(pkg, meta); dep != nil {
			packages = append(packages, dep)
		}
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: packages}, nil
}

// Prints {distribution name: path of its pulumi-plugin.json or ""} for the names given.
const findPluginJSONs = `import importlib.metadata as md, importlib.util as iu, json, os, sys
found = {}
for name in sys.argv[1:]:
    path = ""
    try:
        spec = iu.find_spec(md.distribution(name).metadata["Name"].replace("-", "_"))
        for location in (spec.submodule_search_locations or []) if spec else []:
            if os.path.isfile(os.path.join(location, "pulumi-plugin.json")):
                path = os.path.join(location, "pulumi-plugin.json")
                break
    except Exception:
        pass
    found[name] = path
print(json.dumps(found))
`

// pluginJSONPaths runs findPluginJSONs in the virtualenv (upstream readAllPulumiPluginJSONPaths).
func pluginJSONPaths(
	ctx context.Context, tc toolchain.Toolchain, pkgs []plugin.DependencyInfo,
) (map[string]string, error) {
	paths := map[string]string{}
	if len(pkgs) == 0 {
		return paths, nil
	}
	args := []string{"-c", findPluginJSONs}
	for _, pkg := range pkgs {
		args = append(args, pkg.Name)
	}
	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return nil, err
	}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("finding the packages' pulumi-plugin.json: %w", err)
	}
	if err := json.Unmarshal(out, &paths); err != nil {
		return nil, fmt.Errorf("failed to parse pulumi-plugin.json paths: %w", err)
	}
	return paths, nil
}

// A plain release version (1.2 or 1.2.3); pre-releases are skipped (see packageDependency).
var releaseVersion = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*$`)

// packageDependency is upstream packageDependencyFromPluginJSON without parameterized
// packages (this project uses none) and with PEP 440 translation only for plain releases
// (upstream determinePluginVersion also maps a/b/rc/post/dev, and skips what it cannot).
func packageDependency(
	pkg plugin.DependencyInfo, meta *plugin.PulumiPluginJSON,
) *pulumirpc.PackageDependency {
	var name, ver, server string
	if meta != nil {
		if !meta.Resource {
			return nil // the package says it has no plugin
		}
		name, ver, server = meta.Name, meta.Version, meta.Server
	}
	if name == "" {
		name = strings.TrimPrefix(pkg.Name, "pulumi-")
	}
	if ver == "" {
		if !releaseVersion.MatchString(pkg.Version) {
			return nil
		}
		parts := strings.Split(pkg.Version, ".")
		for len(parts) < 3 {
			parts = append(parts, "0")
		}
		ver = strings.Join(parts, ".")
	}
	if !strings.HasPrefix(ver, "v") {
		ver = "v" + ver
	}
	return &pulumirpc.PackageDependency{Name: name, Version: ver, Kind: "resource", Server: server}
}

// InstallDependencies installs nothing: the tests run programs from the project's own
// venv, which `make setup` installs from requirements.lock. It says so on the stream
// (upstream InstallDependencies runs the toolchain's installer).
func (h *host) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest,
	server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	closer, stdout, _, err := rpcutil.MakeInstallDependenciesStreams(server, req.IsTerminal)
	if err != nil {
		return err
	}
	defer closer.Close()
	_, err = fmt.Fprintf(stdout, "Installing dependencies...\n\n"+
		"Skipped: the test language host installs nothing (the virtualenv is made by `make setup`)\n\n")
	if err != nil {
		return err
	}
	return closer.Close()
}

// Run executes the program: `python -u pulumi-language-python-exec <args> <entry point>`
// in the virtualenv, the stack's configuration in PULUMI_CONFIG and its secret keys in
// PULUMI_CONFIG_SECRET_KEYS (upstream Run, constructArguments, constructConfig and
// constructConfigSecretKeys). Exit 32 means the program already told the user (Bail).
func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	if req.GetAttachDebugger() {
		return &pulumirpc.RunResponse{Error: "the test language host cannot attach a debugger"}, nil
	}
	opts, err := parseOptions(req.Info)
	if err != nil {
		return nil, err
	}
	tc, err := toolchain.ResolveToolchain(opts)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return nil, err
	}

	args := []string{h.exec}
	appendArg := func(name, value string) {
		if value != "" {
			args = append(args, "--"+name, value)
		}
	}
	appendArg("monitor", req.GetMonitorAddress())
	appendArg("engine", h.engineAddress)
	appendArg("project", req.GetProject())
	appendArg("root_directory", req.GetInfo().GetRootDirectory())
	appendArg("stack", req.GetStack())
	appendArg("pwd", req.GetPwd())
	appendArg("dry_run", strconv.FormatBool(req.GetDryRun()))
	appendArg("parallel", strconv.Itoa(int(req.GetParallel())))
	appendArg("tracing", h.tracing)
	appendArg("organization", req.GetOrganization())
	args = append(args, req.GetInfo().GetEntryPoint())
	args = append(args, req.GetArgs()...)

	// Stopped by the Cancel RPC or when the request ends, interrupt first (upstream Run).
	runCtx, stop := context.WithCancel(h.cancelCtx)
	defer stop()
	context.AfterFunc(ctx, stop)
	cmd, err := tc.Command(runCtx, args...)
	if err != nil {
		return nil, err
	}
	cmd.Cancel = func() error {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr

	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	if cfg := req.GetConfig(); cfg != nil { // upstream sets PULUMI_CONFIG only when there is config
		encoded, err := json.Marshal(cfg)
		if err != nil {
			return nil, fmt.Errorf("failed to serialize configuration: %w", err)
		}
		env = append(env, "PULUMI_CONFIG="+string(encoded))
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	encodedKeys, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("failed to serialize configuration secret keys: %w", err)
	}
	cmd.Env = append(env, "PULUMI_CONFIG_SECRET_KEYS="+string(encodedKeys))

	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		switch {
		case errors.As(err, &exitErr) && exitErr.ExitCode() == exitAfterUserActionableMessage:
			return &pulumirpc.RunResponse{Bail: true}, nil
		case errors.As(err, &exitErr) && exitErr.ExitCode() > 0:
			err = fmt.Errorf("program exited with non-zero exit code: %d", exitErr.ExitCode())
		case errors.As(err, &exitErr):
			err = fmt.Errorf("program exited unexpectedly: %w", exitErr)
		default:
			err = fmt.Errorf("problem executing program (could not run language executor): %w", err)
		}
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// Cancel stops a running program (upstream Cancel).
func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	h.cancel()
	return &emptypb.Empty{}, nil
}
