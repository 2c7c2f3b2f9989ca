"""``@task.ccp``: a TaskFlow function returns a Method's inputs, and the task runs the Method.

The function runs where TaskFlow functions run, with XComs and the context; the task then is a
``CCPExecuteMethodOperator`` with those inputs (same arguments, manifest, retries and reattach; docs/operators.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.providers.common.compat.sdk import (
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_provider_ccp import protocol
from airflow_provider_ccp.inputs import check_mapping, public_inputs
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.retries import fail_without_retry

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context
    from airflow.triggers.base import BaseTrigger

#: ``next_kwargs`` key carrying the inputs across a deferral: the resumed task does not run the function again.
RESUME_KEY = "ccp_inputs"
#: What a secret input's value becomes in ``next_kwargs``, which Airflow stores in clear.
WITHHELD = "***"


class _CCPDecoratedOperator(DecoratedOperator, CCPExecuteMethodOperator):
    """Runs the decorated function for the inputs, then the Method as ``CCPExecuteMethodOperator`` does."""

    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *CCPExecuteMethodOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **CCPExecuteMethodOperator.template_fields_renderers,
    }
    custom_operator_name: str = "@task.ccp"
    #: Rendered Templates then show the inputs the function returned (secret ones masked).
    overwrite_rtif_after_execution: bool = True

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("inputs") is not None:
            raise TypeError("@task.ccp takes the Method's inputs from the function's return value, not inputs=")
        super().__init__(**kwargs)

    @fail_without_retry
    def execute(self, context: Context) -> Any:
        context_merge(context, self.op_kwargs)
        inputs = self.python_callable(*self.op_args, **determine_kwargs(self.python_callable, self.op_args, context))
        check_mapping(self.method_id, inputs)  # None (a function that forgot to return) submits nothing
        self.inputs = inputs
        # Masked before anything can log them; a retry runs the function again, and reattaches
        # when it returns the same inputs (the fingerprint is the operator's).
        self._mask_secret_inputs()
        return super().execute(context)

    def defer(
        self, *, trigger: BaseTrigger, method_name: str, kwargs: dict[str, Any] | None = None, timeout: Any = None
    ) -> NoReturn:
        kwargs = {**(kwargs or {}), RESUME_KEY: self._inputs_to_resume()}
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def _inputs_to_resume(self) -> dict[str, str]:
        """What the resumed task needs of the inputs (lineage, whether outputs may hold a secret): the
        public values as sent, and only the names of the secret ones."""
        inputs = self.inputs if isinstance(self.inputs, Mapping) else {}
        shown = protocol.string_inputs(public_inputs(self._method_description(), inputs))
        return {name: shown.get(name, WITHHELD) for name in inputs}

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **resumed: Any) -> dict[str, Any]:
        if self.inputs is None and isinstance(resumed.get(RESUME_KEY), Mapping):
            self.inputs = dict(resumed[RESUME_KEY])
        return super().execute_complete(context, event)


def ccp_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """``@task.ccp(method_id=..., ...)``: the function returns the Method's inputs (a dict). Takes
    ``CCPExecuteMethodOperator``'s arguments except ``inputs``; the task returns its manifest."""
    # The XComs are the manifest's, never inferred from the function's return annotation.
    kwargs.setdefault("multiple_outputs", kwargs.get("wait_for_completion", True))
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=_CCPDecoratedOperator, **kwargs
    )


__all__ = ["ccp_task"]
