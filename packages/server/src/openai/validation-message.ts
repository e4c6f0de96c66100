// ajv's validation errors as one OpenAI error: the field at fault as `param` in the client's notation
// (`messages[0].content`), and a sentence a person can act on ("temperature must be <= 2", "prompt is
// required", or for union-typed fields a description of every accepted shape).

import type { FlashserveError } from '@flashserve/core';
import { requestInvalid } from '../errors.js';
import { KEY_HINTS, UNION_HINTS } from './schemas.js';

export interface ValidationIssue {
  readonly keyword: string;
  readonly instancePath: string;
  readonly message?: string;
  readonly params: Record<string, unknown>;
}

/** `/messages/0/content` -> `messages[0].content`; a missing property is named itself. */
function paramOf(issue: ValidationIssue): string {
  const parts = issue.instancePath.split('/').filter((p) => p !== '');
  const missing = issue.params['missingProperty'];
  if (typeof missing === 'string') parts.push(missing);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

export function fromValidation(issues: readonly ValidationIssue[]): FlashserveError {
  // With anyOf, ajv reports each branch and then the anyOf itself; the last names the field as a whole.
  const union = issues.find((i) => i.keyword === 'anyOf' || i.keyword === 'oneOf') ?? issues[0];
  if (!union) return requestInvalid('invalid request body');
  const unionParam = paramOf(union);
  const unionField = unionParam.split(/[.[]/).pop() ?? unionParam;
  const hasHint = union.keyword === 'anyOf' && UNION_HINTS[unionField.replace(/\]$/, '')] !== undefined;
  // A nullable object (`anyOf [object, null]`) whose own field is wrong: name that field.
  const nested = hasHint
    ? undefined
    : issues.find((i) => i.instancePath.startsWith(`${union.instancePath}/`));
  const issue = nested ?? union;
  const param = paramOf(issue);
  const field = param.split(/[.[]/).pop() ?? param;
  const badKey = issues.find((i) => i.keyword === 'propertyNames' && i.instancePath === union.instancePath);
  if (badKey && !nested) {
    const hint = KEY_HINTS[unionField] ?? 'is not allowed';
    const message = `${unionParam} key ${JSON.stringify(badKey.params['propertyName'])} ${hint}`;
    return Object.assign(requestInvalid(message), { param: unionParam });
  }
  const unionHint = issue.keyword === 'anyOf' ? UNION_HINTS[field.replace(/\]$/, '')] : undefined;
  const nullableHint = issue.keyword === 'anyOf' ? firstBranchMessage(issues, issue) : undefined;
  let message: string;
  if (param === '') message = `request body ${issue.message ?? 'is invalid'}`;
  else if (issue.keyword === 'required') message = `${param} is required`;
  else if (unionHint) message = param === field ? unionHint : `${unionHint} (at ${param})`;
  else message = `${param} ${nullableHint ?? issue.message ?? 'is invalid'}`;
  return Object.assign(requestInvalid(message), { param: param === '' ? undefined : param });
}

/** For `anyOf [X, null]` the useful message is X's ("must be <= 2"), reported before the anyOf. */
function firstBranchMessage(issues: readonly ValidationIssue[], anyOf: ValidationIssue): string | undefined {
  const branch = issues.find(
    (i) => i !== anyOf && i.instancePath === anyOf.instancePath && i.params['type'] !== 'null',
  );
  return branch?.message;
}
