-- Take the best waiting job (see take() in _lib.lua), once its keys are checked.
local bad = wrong_take_keys(K.waiting, K.active, K.failed, K.limiter)
if bad then return bad end
return take(K.waiting, K.active, K.failed, K.paused, K.limiter, A.token, now_ms())
