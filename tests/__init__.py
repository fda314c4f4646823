"""wearjax's tests. `beartype_tower` is the suite's run-time type checker
(`--jaxtyping-packages=wearjax,tests.beartype_tower`): beartype with PEP 484's numeric tower,
so an `int` passes where a `float` is annotated, as the annotations mean."""

from beartype import BeartypeConf, beartype

beartype_tower = beartype(conf=BeartypeConf(is_pep484_tower=True))
