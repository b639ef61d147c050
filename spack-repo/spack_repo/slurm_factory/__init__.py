# The slurm_factory Spack package repository (package API v2). Packages live in packages/.
