# tessera: `make demo` runs the lid-driven cavity on 2 ranks and post-processes it
# with `tessera post` (centrelines against Ghia et al. 1982, vorticity, history);
# `make test` runs every test (unit, ThreadComm multi-rank, real mpirun, h5py).
SHELL := /bin/bash
CARGO ?= cargo

# Open MPI refuses root without these; CI and fresh machines run as root.
# Oversubscription lets tests use up to 4 ranks on 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
# Quieter Open MPI in containers without a high-speed fabric.
export OMPI_MCA_btl_vader_single_copy_mechanism := none

.PHONY: setup build demo test test-slow bench bench-petsc bench-openfoam bench-dask bench-ray bench-adaptive clean

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release --locked

demo: build
	./target/release/tessera check cases/cavity.toml --np 2 | tail -n 12
	./target/release/tessera run --np 2 cases/cavity.toml --overwrite
	./target/release/tessera post runs/cavity cases/pipelines/cavity_ghia.toml
	@echo "demo: output in runs/cavity (open runs/cavity/output.xdmf in ParaView); post-processing in runs/cavity/post: centrelines vs Ghia et al. (u_centreline.png, v_centreline.png), vorticity.png, history.png"

test: setup
	$(CARGO) build --locked --workspace --bins --examples
	set -o pipefail; $(CARGO) test --locked --workspace 2>&1 | tee target/test-output.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "tests: %d passed, %d failed\n", p, f}' target/test-output.log

# The full-resolution validations left out of `make test` for time (the Re = 100
# cavity at 128² against Ghia et al. and Bruneau & Saad).
test-slow: setup
	$(CARGO) test --locked --release -p solver --test flow -- --ignored

# Results and how to read them: docs/BENCHMARKS.md.
bench: setup
	$(CARGO) bench --locked -p solver --bench stencil
	$(CARGO) build --release --locked -p decomp --example halo_bench
	mpirun -n 2 --bind-to core target/release/examples/halo_bench
	$(MAKE) bench-petsc
	$(MAKE) bench-openfoam
	$(MAKE) bench-dask
	$(MAKE) bench-ray
	$(MAKE) bench-adaptive

# Multigrid-CG against PETSc KSP CG + PCMG (installs petsc-dev and python3-petsc4py).
bench-petsc: setup
	@bash scripts/setup_petsc.sh
	$(CARGO) build --release --locked -p solver --example poisson_bench
	/usr/bin/python3 benches/poisson_vs_petsc.py --repeat 5 --json target/poisson_vs_petsc.json \
		--tessera-args "" --tessera-args "--method fcg --cycle F --pre 2 --post 2" --tessera-args "--method fcg --pre 1 --post 2"

# tessera's cavity against OpenFOAM's icoFoam (installs Debian's openfoam).
bench-openfoam: setup
	@bash scripts/setup_openfoam.sh
	$(CARGO) build --release --locked
	/usr/bin/python3 benches/cavity_vs_icofoam.py --json target/cavity_vs_icofoam.json
	/usr/bin/python3 benches/cavity_time_error.py --json target/cavity_time_error.json

# `tessera post` against Dask + h5py on the same 1024² cavity run (installs python3-dask);
# the run is made once in target/bench-dask/run and reused.
bench-dask: setup
	@bash scripts/setup_dask.sh
	$(CARGO) build --release --locked
	/usr/bin/python3 benches/post_vs_dask.py --json target/post_vs_dask.json

# Orchestration overhead per run: `tessera study run` vs Ray tasks/actors vs a plain
# thread pool, 1000 trivial runs 2 at a time (installs ray and adaptive into
# target/study-bench-venv); about 20 minutes.
STUDY_BENCH_PY := target/study-bench-venv/bin/python
bench-ray: setup
	@bash scripts/setup_study_bench.sh
	$(CARGO) build --release --locked
	$(STUDY_BENCH_PY) benches/study_vs_ray.py --json target/study_vs_ray.json

# Runs needed to reach an interpolation error: orchestrate::adaptive::Learner1D vs
# python-adaptive's Learner1D on a sharp peak (same venv as bench-ray); a few minutes.
bench-adaptive: setup
	@bash scripts/setup_study_bench.sh
	$(CARGO) build --release --locked --example adaptive_bench -p orchestrate
	$(STUDY_BENCH_PY) benches/adaptive_vs_python.py --json target/adaptive_vs_python.json
	$(STUDY_BENCH_PY) benches/adaptive_vs_python.py --protocols batch2 --functions peak,tanh \
		--centers 0.0,0.1234,0.3333 --json target/adaptive_vs_python_batch2.json

clean:
	$(CARGO) clean
	rm -rf runs
