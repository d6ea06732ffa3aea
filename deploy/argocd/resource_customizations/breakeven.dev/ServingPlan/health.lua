-- Argo CD health check for breakeven.dev/ServingPlan.
--
-- Argo CD runs it with gopher-lua, the global `obj` holding the plan, and only the base, table,
-- package and a safe os library open (argo-cd util/lua/lua.go, runLua): no string library, so
-- messages are built with `..` alone. It reads what the operator writes (operator/breakeven/core/
-- switching.py `conditions`, shell/operator.py `_invalid`; docs/operations.md "Status"):
-- status.observedGeneration, status.phase, status.message and the Ready, Switching and
-- FallbackActive conditions.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(value, fallback)
  if value == nil or value == "" then
    return fallback
  end
  return value
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Breakeven operator to evaluate the plan"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = obj.status.phase
local message = text(obj.status.message, phase)

if phase == "Invalid" or phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end

if phase == "Planned" then
  -- spec.dryRun: the decision is reported and nothing is applied.
  hs.status = "Healthy"
  hs.message = "Dry run: " .. message
  return hs
end

local switching = condition("Switching")
if switching ~= nil and switching.status == "True" then
  hs.status = "Progressing"
  hs.message = text(switching.message, "Switching")
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  local fallback = condition("FallbackActive")
  if fallback ~= nil and fallback.status == "True" then
    hs.message = "Serving dense after a fallback: " .. text(fallback.message, "")
  else
    hs.message = message
  end
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = text(ready.message, message)
else
  hs.message = message
end
return hs
