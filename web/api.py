"""The HTTP API (/api/v1): the CLI's --json shapes, bearer tokens (`quota user token NAME`), writes once per
Idempotency-Key (the CLI's --key). Refusals are the library's error objects, 409 (refused) or 422 (bad input)."""
from __future__ import annotations

import datetime as dt
from typing import Optional

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel

from quota.audit import trace as audit
from quota.ledger import balances, operations as quota_ops, projects
from quota.planning import plans
from quota.clock import parse_day
from quota.store import db
from web.app import api_need, cached_read, engine_of, write

router = APIRouter(prefix="/api/v1")
KeyHeader = Header(None, alias="Idempotency-Key", description="Same semantics as the CLI's --key.")


def _day(value: Optional[str], what: str) -> Optional[dt.date]:
    return parse_day(value, what) if value else None


class ReserveBody(BaseModel):
    pollutant: Optional[str] = None
    expires: Optional[str] = None


class ApproveBody(BaseModel):
    doc: str


class PlanBody(BaseModel):
    as_of: Optional[str] = None
    time_limit: float = 10.0


@router.get("/balance")
async def balance(request: Request, by: str = "pollutant", pollutant: Optional[str] = None, zone: Optional[str] = None,
            as_of: Optional[str] = None, user=Depends(api_need("read_balance", db.HEAD_SQL))) -> dict:
    """`quota balance --json`."""
    return await cached_read(request, balances.balance, by=by, pollutant=pollutant or None, zone=zone or None,
                             as_of=_day(as_of, "as-of date"))


@router.get("/projects")
def project_list(request: Request, state: Optional[str] = None, user=Depends(api_need("read_projects"))) -> dict:
    """`quota project list --json`."""
    return {"projects": projects.project_rows(engine_of(request), state=state or None)}


@router.get("/projects/{project_id}/trace")
def trace(request: Request, project_id: str, user=Depends(api_need("read_statement"))) -> dict:
    """`quota trace PROJECT --json`."""
    return audit.trace(engine_of(request), project_id)


@router.post("/projects/{project_id}/reserve")
async def reserve(request: Request, project_id: str, body: Optional[ReserveBody] = None,
                  key: Optional[str] = KeyHeader, user=Depends(api_need("reserve"))) -> dict:
    body = body or ReserveBody()
    return await write(request, quota_ops.reserve, engine_of(request), project_id, actor=user.name,
                       pollutant=body.pollutant, expires=_day(body.expires, "lapse date"), key=key)


@router.post("/projects/{project_id}/approve")
async def approve(request: Request, project_id: str, body: ApproveBody, key: Optional[str] = KeyHeader,
                  user=Depends(api_need("approve"))) -> dict:
    return await write(request, quota_ops.approve, engine_of(request), project_id, doc=body.doc, actor=user.name,
                       key=key)


@router.post("/projects/{project_id}/release")
async def release(request: Request, project_id: str, key: Optional[str] = KeyHeader,
                  user=Depends(api_need("release"))) -> dict:
    return await write(request, quota_ops.release, engine_of(request), project_id, actor=user.name, key=key)


@router.post("/projects/{project_id}/cancel")
async def cancel(request: Request, project_id: str, key: Optional[str] = KeyHeader,
                 user=Depends(api_need("cancel"))) -> dict:
    return await write(request, quota_ops.cancel, engine_of(request), project_id, actor=user.name, key=key)


@router.get("/verify")
def verify(request: Request, user=Depends(api_need("verify"))) -> dict:
    """`quota verify --json` (409 when it finds a problem)."""
    from fastapi.responses import JSONResponse
    summary, problems = audit.verify_and_record(engine_of(request), user.name)
    body = {**summary, "problems": [p.to_dict() for p in problems]}
    return JSONResponse(body, 200 if not problems else 409)


@router.get("/plans")
def plan_list(request: Request, user=Depends(api_need("read_plans"))) -> dict:
    """`quota plan list --json`."""
    return plans.list_plans(engine_of(request))


@router.post("/plans")
def plan_run(request: Request, body: Optional[PlanBody] = None, key: Optional[str] = KeyHeader,
             user=Depends(api_need("run_plan"))) -> dict:
    """`quota plan run --json` (time limit at most 60 s); with an Idempotency-Key, a repeat returns the plan the
    first stored (with "replayed")."""
    body = body or PlanBody()
    return plans.run_plan(engine_of(request), as_of=_day(body.as_of, "as-of date"),
                          time_limit=min(body.time_limit, 60.0), actor=user.name, key=key)


@router.get("/plans/{plan_id}")
def plan(request: Request, plan_id: str, user=Depends(api_need("read_plans"))) -> dict:
    return plans.get_plan(engine_of(request), plan_id)


@router.post("/plans/{plan_id}/apply")
def plan_apply(request: Request, plan_id: str, key: Optional[str] = KeyHeader,
               user=Depends(api_need("apply_plan"))) -> dict:
    return plans.apply_plan(engine_of(request), plan_id, actor=user.name, key=key)
