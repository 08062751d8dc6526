-- proc_events: add processes to a probe's alive set unless their record already has an end.
-- ARGV: alive key, then (proc key, start, member) triples. Run in the batch's MULTI after the batch's HSETNX
-- writes, so an exit earlier in the batch (or in an earlier one) keeps an ended process out: a repeated or late
-- fork/exec then changes nothing and notifies nothing. Returns how many members were added.
local alive = ARGV[1]
local added = 0
for i = 2, #ARGV, 3 do
  if redis.call('HEXISTS', ARGV[i], 'end') == 0 then
    added = added + redis.call('ZADD', alive, ARGV[i + 1], ARGV[i + 2])
  end
end
return added
