-- Argo CD health of flashback.tech FlashbackRepository, FlashbackBucket and FlashbackAccessKey
-- objects, read from the kstatus conditions the operator writes (Ready, Reconciling, Stalled,
-- each with observedGeneration, a reason and a message). One script for the three kinds; see
-- README.md beside it for the argocd-cm keys. Lua 5.1, as Argo CD runs it (gopher-lua).
local hs = {}

local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- The operator pauses a repository on this annotation's value "true", in any case and spacing.
local function paused(metadata)
  local value = metadata.annotations and metadata.annotations["flashback.tech/paused"]
  if type(value) ~= "string" then
    return false
  end
  return string.lower(string.match(value, "^%s*(.-)%s*$")) == "true"
end

local function older(observed, generation)
  return generation ~= nil and observed ~= nil and observed < generation
end

local status = obj.status or {}
local conditions = status.conditions or {}
local ready = condition(conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end

-- A spec the operator has not seen yet: whatever the conditions say is about an older one.
local generation = obj.metadata.generation
if older(status.observedGeneration, generation) or older(ready.observedGeneration, generation) then
  hs.status = "Progressing"
  hs.message = string.format("waiting for the operator to observe generation %d", generation)
  return hs
end

local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message
  return hs
end

local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end

-- Paused by annotation (repositories and buckets): Suspended, whether or not the remote is in
-- step (the Ready message says which), as Argo CD shows a paused Deployment.
if ready.reason == "Paused" or (obj.kind ~= "FlashbackAccessKey" and paused(obj.metadata)) then
  hs.status = "Suspended"
  hs.message = ready.message
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.reason == "OutOfSync" then
  -- ObserveOnly, and the remote differs from the spec: the operator never writes, so only a
  -- person (changing the spec or the remote) makes it Healthy.
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = ready.message
return hs
