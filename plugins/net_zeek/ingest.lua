-- net_zeek: apply one batch of Zeek records inside Redis (DESIGN.md §3: server-side batch application).
-- ARGV[1] probe id, ARGV[2] the frame's body (msgpack array of {path, ts, uid?, rec}), ARGV[3] retention (s).
-- Runs on Redis 6.2 and 7.x (EVAL/EVALSHA; Functions need 7). Key templates: plugins/net_zeek/net_zeek.toml.
-- Returns {records, new, repeats, rejected, reason1, count1, reason2, count2, ...}.
--
-- Rules: the same record from the same probe twice writes nothing and so notifies nothing (SET NX,
-- HSETNX, SADD of a present member, and EXPIRE only on what was just created); from a second probe only
-- its membership is added. Index, histogram and host entries are gathered per batch and written once.
--
-- Change feed (what viewers follow): a batch that changed what a graph shows appends ONE entry to the stream
-- wd:net_zeek:feed, field 'c' = msgpack array {version, previous entry's id, probe, tag, fields..., tag, ...},
-- flat (no table per change, nil written as false); wd:net_zeek:feedlast holds the latest entry's id, so the
-- entries form a chain and a reader sees exactly when it lost some to trimming. Tags and their fields
-- (plugins/net_zeek/query.py decodes them):
--   'c' new conn          uid, ts, duration, orig, resp, resp_port, proto, service, bytes (orig + resp)
--   'u' longer report     the same nine, then the bytes of the report it replaces
--   'h' http response     uid, ts, status_code
--   'n' dns name          ip, name, ts (names:{ip} changed)
--   'w' notice or weird   path, ts, host, host (src/id.orig_h, dst/id.resp_h; false when absent)
-- Entries older than FEED_KEEP_MS are trimmed (XADD MINID ~): the feed holds only what a viewer may not have
-- read yet, so its size follows the recent ingest rate, not the frame size.

local probe = ARGV[1]
local ttl = tonumber(ARGV[3])
local P = 'wd:net_zeek:'
local FEED_VERSION = 1
local FEED_KEEP_MS = 120000  -- a viewer lagging longer loses entries and sees it (the chain below)
-- The interval index's geometry, filled in from wiredraw.core.interval by schema.py (the one definition, which
-- the readers in query.py use too): level k holds connections lasting at most INDEX_BASE * INDEX_FACTOR^k.
local INDEX_BASE, INDEX_FACTOR, INDEX_LEVELS = @INDEX_BASE@, @INDEX_FACTOR@, @INDEX_LEVELS@

local ok, msgs = pcall(cmsgpack.unpack, ARGV[2])
if not ok or type(msgs) ~= 'table' then
  return {0, 0, 0, 1, 'body is not a msgpack array', 1}
end

local records, new, repeats, rejected = 0, 0, 0, 0
local reasons = {}
local function reject(why)
  rejected = rejected + 1
  reasons[why] = (reasons[why] or 0) + 1
end

local expire = {}      -- keys created in this batch: one EXPIRE each, at the end
local hosts = {}       -- ip -> latest ts
local appends = {}     -- index bucket -> entries: one APPEND per bucket per batch
local zadds_nx = {}    -- key -> {member, ...} with score 0 (lexicographic sets), ZADD NX
local hist = {}        -- chunk -> {conns, bytes}
local names = {}       -- ip -> {name -> ts}
local first, last = nil, nil
local floor, format = math.floor, string.format
local feed, nf = {FEED_VERSION, false, probe}, 3  -- the change feed entry, appended to in place

local function str_or_false(v)
  if type(v) == 'string' then return v end
  return false
end

-- The conn facts rule (stated in plugins/net_zeek/query.py, "Connection facts", which reads stored records by
-- it; tests/plugins/net_zeek/test_zeek_facts.py checks the two agree). A number fact is exact: under 2^53 in
-- magnitude (not NaN, not inf; past 2^63 cmsgpack would write a nonsense int); a duration or a side's bytes is
-- Lua's tonumber of the field (a numeric string counts too) when exact, else 0.
local EXACT = 9007199254740992  -- 2^53
local function exact(n)
  return n > -EXACT and n < EXACT
end

local function fact_number(v)
  local n = tonumber(v)
  if n == nil or not exact(n) then return 0 end
  return n
end

local function conn_bytes(rec)
  return fact_number(rec['orig_bytes']) + fact_number(rec['resp_bytes'])
end

-- 'c'/'u' + the nine facts a viewer needs of a connection.
local function feed_conn(tag, uid, rec, ts, duration, bytes)
  local start, port = rec['ts'], rec['id.resp_p']
  if type(start) ~= 'number' or not exact(start) then start = ts end
  if type(port) ~= 'number' or not exact(port) then port = false end
  feed[nf + 1] = tag; feed[nf + 2] = uid; feed[nf + 3] = start; feed[nf + 4] = duration
  feed[nf + 5] = str_or_false(rec['id.orig_h']); feed[nf + 6] = str_or_false(rec['id.resp_h'])
  feed[nf + 7] = port; feed[nf + 8] = str_or_false(rec['proto']); feed[nf + 9] = str_or_false(rec['service'])
  feed[nf + 10] = bytes
  nf = nf + 10
end

-- 'h' for an http response, 'w' for a notice or weird that names a host.
local function feed_detail(path, uid, ts, rec)
  if path == 'http' then
    local status = rec['status_code']
    if uid ~= nil and type(status) == 'number' then
      feed[nf + 1] = 'h'; feed[nf + 2] = uid; feed[nf + 3] = ts or false; feed[nf + 4] = status
      nf = nf + 4
    end
  else
    local a = str_or_false(rec['src']) or str_or_false(rec['id.orig_h'])
    local b = str_or_false(rec['dst']) or str_or_false(rec['id.resp_h'])
    if a or b then
      feed[nf + 1] = 'w'; feed[nf + 2] = path; feed[nf + 3] = ts or false; feed[nf + 4] = a; feed[nf + 5] = b
      nf = nf + 5
    end
  end
end

local function queue_member(key, member)
  local list = zadds_nx[key]
  if list == nil then list = {}; zadds_nx[key] = list end
  list[#list + 1] = member
end

-- Lua's unpack has a stack limit: long argument lists go in slices.
local function call_sliced(command, key, flags, args)
  local step = 4000
  for first = 1, #args, step do
    local last = math.min(first + step - 1, #args)
    local call = {command, key}
    for _, f in ipairs(flags) do call[#call + 1] = f end
    for i = first, last do call[#call + 1] = args[i] end
    redis.call(unpack(call))
  end
end

local function see_time(ts)
  if first == nil or ts < first then first = ts end
  if last == nil or ts > last then last = ts end
end

local function see_host(ip, ts)
  if type(ip) == 'string' and ip ~= '' then
    local seen = hosts[ip]
    if seen == nil or ts > seen then hosts[ip] = ts end
  end
end

-- Store one record in a hash of records, with this probe's membership. Returns 1 if the record is new.
local function store_in(key, path, raw)
  local field = path .. ':' .. redis.sha1hex(raw)
  local created = redis.call('HSETNX', key, field, raw)
  local member = redis.call('HSETNX', key, field .. '@' .. probe, 1)
  if created == 1 or member == 1 then expire[key] = true end
  return created, member
end

local function is_ip(s)
  return type(s) == 'string' and (s:match('^%d+%.%d+%.%d+%.%d+$') ~= nil or s:match('^[%x:]+:[%x:%.]*$') ~= nil)
end

-- Interval index level: the smallest k with INDEX_BASE * INDEX_FACTOR^k >= duration (capped at the last level),
-- so one bucket holds it (core/interval.py, IntervalIndex.level_of).
local function level_of(duration)
  local size, k = INDEX_BASE, 0
  while size < duration and k < INDEX_LEVELS - 1 do size = size * INDEX_FACTOR; k = k + 1 end
  return k, size
end

local function clean_duration(rec)
  return fact_number(rec['duration'])
end

-- An entry is placed by the interval it holds (to the microsecond), IntervalIndex.place(start, end - start) of those
-- two numbers, so that a query at any time the entry holds reads its bucket. That differs from the unrounded
-- interval's place only within a microsecond of a bucket's edge or a level's limit: only there are they read back.
local NEAR = 2e-6
local function index_conn(uid, ts, duration)
  if duration < 0 then duration = 0 end
  local line = format('%.6f|%.6f|%s\n', ts, ts + duration, uid)
  local k, size = level_of(duration)
  local b = floor(ts / size)
  if ts - b * size < NEAR or (b + 1) * size - ts < NEAR or size - duration < NEAR
      or (k > 0 and duration - size / INDEX_FACTOR < NEAR) then
    local held_start, held_end = line:match('^([^|]*)|([^|]*)|')
    local start = tonumber(held_start)
    k, size = level_of(tonumber(held_end) - start)
    b = floor(start / size)
  end
  local ix = P .. 'ix:' .. k .. ':' .. b
  local list = appends[ix]
  if list == nil then list = {}; appends[ix] = list end
  list[#list + 1] = line
  expire[ix] = true
end

-- The histogram counts a record's bytes when they are an integer (HINCRBY takes no fraction): a bogus count adds
-- nothing rather than failing the batch.
local function count_conn(ts, conns, bytes)
  local chunk = floor(ts / 60)
  local h = hist[chunk]
  if h == nil then h = {0, 0}; hist[chunk] = h end
  h[1] = h[1] + conns
  if bytes == floor(bytes) then h[2] = h[2] + bytes end
end

for i = 1, #msgs do
  local m = msgs[i]
  local path, ts, uid, raw
  if type(m) == 'table' then path, ts, uid, raw = m['path'], m['ts'], m['uid'], m['rec'] end
  records = records + 1
  if type(path) ~= 'string' or type(raw) ~= 'string' or path == '' then
    reject('not a {path, rec} message')
  elseif ts ~= nil and (type(ts) ~= 'number' or ts ~= ts or ts == math.huge or ts == -math.huge) then
    reject('ts is not a finite number')
  elseif uid ~= nil and type(uid) ~= 'string' then
    reject('uid is not a string')
  elseif path == 'conn' or path == 'open_conn' then
    local okr, rec = pcall(cmsgpack.unpack, raw)
    if uid == nil or ts == nil then
      reject('conn record without uid or ts')
    elseif not okr or type(rec) ~= 'table' then
      reject('conn rec is not a msgpack map')
    else
      local key = P .. 'conn:' .. uid
      local created = redis.call('SET', key, raw, 'NX', 'EX', ttl)
      -- Which probes reported it: member '<uid>|<probe>' of the hour's lexicographic set.
      local seen_key = P .. 'connprobes:' .. floor(ts / 3600)
      local seen_member = uid .. '|' .. probe
      local member = 1
      if created then
        queue_member(seen_key, seen_member)
        expire[seen_key] = true
      else
        member = redis.call('ZADD', seen_key, 'NX', 0, seen_member)
        if member == 1 then expire[seen_key] = true end
      end
      see_host(rec['id.orig_h'], ts)
      see_host(rec['id.resp_h'], ts)
      local duration = clean_duration(rec)
      local bytes = conn_bytes(rec)
      if created then
        new = new + 1
        index_conn(uid, ts, duration)
        count_conn(ts, 1, bytes)
        see_time(ts)
        see_time(ts + duration)
        feed_conn('c', uid, rec, ts, duration, bytes)
      else
        -- A long connection is reported again as it goes on (open_conn every hour, then conn.log when
        -- it ends): a later report that lasts longer replaces the record and moves its index entry.
        local ok_old, old = pcall(cmsgpack.unpack, redis.call('GET', key))
        if not ok_old or type(old) ~= 'table' or type(old['ts']) ~= 'number' then old = {ts = ts, duration = -1} end
        local old_duration = clean_duration(old)
        if duration > old_duration then
          redis.call('SET', key, raw, 'KEEPTTL')
          -- The longer interval gets an entry of its own; readers keep each uid's latest end.
          index_conn(uid, ts, duration)
          local old_bytes = conn_bytes(old)
          count_conn(ts, 0, bytes - old_bytes)
          see_time(ts + duration)
          feed_conn('u', uid, rec, ts, duration, bytes)
          feed[nf + 1] = old_bytes
          nf = nf + 1
          new = new + 1
        elseif member == 0 then
          repeats = repeats + 1
        end
      end
    end
  else
    local created, member
    local rec = nil  -- decoded only for the paths that need it
    local feeds = path == 'http' or path == 'notice' or path == 'weird'
    if uid ~= nil then
      created, member = store_in(P .. 'uid:' .. uid, path, raw)
      if path == 'dns' or (feeds and created == 1) then
        local okr
        okr, rec = pcall(cmsgpack.unpack, raw)
        if not okr or type(rec) ~= 'table' then rec = {} end
      end
      if path == 'dns' then
        if type(rec['query']) == 'string' and type(rec['answers']) == 'table' then
          for _, answer in ipairs(rec['answers']) do
            if is_ip(answer) then
              local n = names[answer]
              if n == nil then n = {}; names[answer] = n end
              local seen = n[rec['query']]
              if seen == nil or (ts or 0) > seen then n[rec['query']] = ts or 0 end
            end
          end
        end
      end
    else
      local okr
      okr, rec = pcall(cmsgpack.unpack, raw)
      if not okr or type(rec) ~= 'table' then rec = {} end
      local links = rec['conn_uids']
      if path == 'x509' and (rec['fingerprint'] or rec['id']) then
        created, member = store_in(P .. 'cert:' .. (rec['fingerprint'] or rec['id']), path, raw)
      elseif type(links) == 'table' and #links > 0 then
        for _, link in ipairs(links) do created, member = store_in(P .. 'uid:' .. link, path, raw) end
      elseif ts ~= nil then
        created, member = store_in(P .. 'log:' .. path .. ':' .. floor(ts / 600), path, raw)
      else
        reject('record without uid, link or ts')
      end
    end
    if created == 1 then
      new = new + 1
      if ts ~= nil then see_time(ts) end
      if feeds then feed_detail(path, uid, ts, rec) end
    elseif created == 0 and member == 0 then
      repeats = repeats + 1
    end
  end
end

-- Per-batch writes: each key once.
for chunk, h in pairs(hist) do
  local key = P .. 'hist:' .. chunk
  redis.call('HINCRBY', key, 'conns', h[1])
  redis.pcall('HINCRBY', key, 'bytes', format('%.0f', h[2]))  -- a total past 2^63 is left as it was
  expire[key] = true
end
local last_seen = {}
for ip, ts in pairs(hosts) do
  last_seen[#last_seen + 1] = ts
  last_seen[#last_seen + 1] = ip
  queue_member(P .. 'hostprobes', ip .. '|' .. probe)
end
if #last_seen > 0 then call_sliced('ZADD', P .. 'hosts', {'GT'}, last_seen) end
for key, entries in pairs(appends) do redis.call('APPEND', key, table.concat(entries)) end
for key, members in pairs(zadds_nx) do
  local args = {}
  for _, m in ipairs(members) do args[#args + 1] = 0; args[#args + 1] = m end
  call_sliced('ZADD', key, {'NX'}, args)
end
for ip, n in pairs(names) do
  local key = P .. 'names:' .. ip
  for name, ts in pairs(n) do
    if redis.call('ZADD', key, 'GT', 'CH', ts, name) == 1 then
      expire[key] = true
      feed[nf + 1] = 'n'; feed[nf + 2] = ip; feed[nf + 3] = name; feed[nf + 4] = ts
      nf = nf + 4
    end
  end
end
for key in pairs(expire) do redis.call('EXPIRE', key, ttl) end
if first ~= nil then
  local span = P .. 'span'
  local have = redis.call('HMGET', span, 'first', 'last')
  if have[1] == false or first < tonumber(have[1]) then redis.call('HSET', span, 'first', format('%.6f', first)) end
  if have[2] == false or last > tonumber(have[2]) then redis.call('HSET', span, 'last', format('%.6f', last)) end
end
if nf > 3 then
  local now = redis.call('TIME')
  local keep_from = tonumber(now[1]) * 1000 + floor(tonumber(now[2]) / 1000) - FEED_KEEP_MS
  feed[2] = redis.call('GET', P .. 'feedlast')
  local id = redis.call('XADD', P .. 'feed', 'MINID', '~', keep_from, '*', 'c', cmsgpack.pack(feed))
  redis.call('SET', P .. 'feedlast', id)
end

local out = {records, new, repeats, rejected}
for why, count in pairs(reasons) do
  out[#out + 1] = why
  out[#out + 1] = count
end
return out
