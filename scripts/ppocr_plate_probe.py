#!/usr/bin/env python3
"""PP-OCR's text detector as a licence-plate backstop, measured on the labelled set (BENCHMARKS.md,
"Privacy, measured"): for each long side given, how many of the labelled plates lie >= 90 % inside
a text box (DB post-processing as rapidocr: probability > 0.3, connected components, mean
probability >= 0.5, boxes grown by area * 1.6 / perimeter).

    python3 -m venv /tmp/ocrvenv && /tmp/ocrvenv/bin/pip install onnxruntime==1.32.0 numpy pillow
    /tmp/ocrvenv/bin/python scripts/ppocr_plate_probe.py 960 1920

The model is `ppocr_det.onnx` from `models/fetch` (COVERMAP_MODELS, default
~/.cache/covermap/models/v1). An experiment to choose the plate backstop by, not part of covermap.
"""
import os
import sys
import json
import numpy as np
import onnxruntime as ort
MODELS = os.environ.get("COVERMAP_MODELS", os.path.expanduser("~/.cache/covermap/models/v1"))
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata")
from PIL import Image
sess = ort.InferenceSession(os.path.join(MODELS, "ppocr_det.onnx"), providers=['CPUExecutionProvider'])
inp = sess.get_inputs()[0].name
L = json.load(open(ROOT + '/labels/privacy.json'))
def det(img, long_side, thr=0.3, box_thr=0.5):
    w, h = img.size
    s = long_side / max(w, h)
    iw, ih = int(round(w*s/32)*32), int(round(h*s/32)*32)
    x = np.asarray(img.convert('RGB').resize((iw, ih), Image.BILINEAR), dtype=np.float32)[:, :, ::-1]  # BGR
    x = (x/255.0 - 0.5)/0.5
    x = x.transpose(2,0,1)[None]
    p = sess.run(None, {inp: x})[0][0,0]
    m = p > thr
    # connected components (4-neigh) via simple flood fill
    lab = np.zeros(m.shape, np.int32); n=0; boxes=[]
    H, W = m.shape
    for y0 in range(H):
        for x0 in range(W):
            if m[y0,x0] and not lab[y0,x0]:
                n+=1; st=[(y0,x0)]; lab[y0,x0]=n; ys=[];xs=[]
                while st:
                    y,x1=st.pop(); ys.append(y); xs.append(x1)
                    for dy,dx in ((1,0),(-1,0),(0,1),(0,-1)):
                        yy,xx=y+dy,x1+dx
                        if 0<=yy<H and 0<=xx<W and m[yy,xx] and not lab[yy,xx]:
                            lab[yy,xx]=n; st.append((yy,xx))
                ys=np.array(ys); xs=np.array(xs)
                score=p[ys,xs].mean()
                if score<box_thr or len(ys)<3: continue
                bx1,by1,bx2,by2=xs.min(),ys.min(),xs.max()+1,ys.max()+1
                bw,bh=bx2-bx1,by2-by1
                d=(bw*bh)*1.6/(2*(bw+bh))
                boxes.append(((bx1-d)/iw*w,(by1-d)/ih*h,(bx2+d)/iw*w,(by2+d)/ih*h,score))
    return boxes
def cov(b, boxes):
    x,y,w,h=b; n=0;i=0
    for a in range(10):
        for c in range(10):
            px=x+(a+.5)*w/10; py=y+(c+.5)*h/10; n+=1
            if any(r[0]<=px<r[2] and r[1]<=py<r[3] for r in boxes): i+=1
    return i/n
for long_side in [int(a) for a in sys.argv[1:]]:
    tot=0; hit=0; nb=0
    for img in L['images']:
        plates=[a for a in L['annotations'] if a['image_id']==img['id'] and a['category_id']==2 and not a['attributes'].get('uncertain')]
        im=Image.open(ROOT + '/'+img['file_name'])
        boxes=det(im, long_side)
        nb+=len(boxes)
        for a in plates:
            tot+=1; c=cov(a['bbox'],boxes); hit+= c>=0.9
            print(long_side, img['file_name'].split('/')[-1], a['bbox'], 'covered %.2f'%c)
    print('long side', long_side, 'plates covered', hit, 'of', tot, 'text boxes', nb)
