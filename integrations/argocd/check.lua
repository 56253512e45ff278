-- Runs health.lua the way Argo CD does, on one object read as JSON from stdin, and prints the
-- result as JSON ({"status": ..., "message": ...}):
--
--   kubectl get fbrepo media -o json | lua5.4 integrations/argocd/check.lua
--
-- The script sees a global `obj` and no io or os library, as in Argo CD. Lua 5.1 to 5.4,
-- with dkjson (Debian: lua-dkjson). tests/integrations.rs feeds it objects the operator wrote.
local json = require("dkjson")

local here = string.match(arg[0], "^(.*)/[^/]*$") or "."
local script = arg[1] or (here .. "/health.lua")

local text = io.read("*a")
local object, _, problem = json.decode(text)
if object == nil then
  io.stderr:write("check.lua: stdin is not a JSON object: ", tostring(problem), "\n")
  os.exit(2)
end

local sandbox = {
  obj = object,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  pcall = pcall, select = select, tonumber = tonumber, tostring = tostring, type = type,
  unpack = unpack or table.unpack,
  math = math, string = string, table = table,
}
local chunk, loadProblem
if setfenv then
  chunk, loadProblem = loadfile(script)
  if chunk then
    setfenv(chunk, sandbox)
  end
else
  chunk, loadProblem = loadfile(script, "t", sandbox)
end
if chunk == nil then
  io.stderr:write("check.lua: ", loadProblem, "\n")
  os.exit(2)
end

local health = chunk()
io.write(json.encode({ status = health.status, message = health.message }), "\n")
