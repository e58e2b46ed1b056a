-- Take the best waiting job (see take() in _lib.lua).
return take(K.waiting, K.active, K.paused, K.limiter, A.token, now_ms())
